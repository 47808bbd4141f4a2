"""`leanrank serve`: the rerank gateway and course search API over HTTP (needs `leanrank[serve]`).

One door in: `create_app(settings, pipeline=..., reranker=..., ledger=...)`. Keys are created with
`new_key` and stored as the entries it returns.
"""

from leanrank.serve.accounting import Accountant, CallContext, Charge
from leanrank.serve.app import create_app
from leanrank.serve.auth import KeyRing, Principal, hash_key, new_key
from leanrank.serve.batching import BatchReranker, MicroBatcher
from leanrank.serve.errors import STATUS_TABLE, status_of

__all__ = [
    "STATUS_TABLE",
    "Accountant",
    "BatchReranker",
    "CallContext",
    "Charge",
    "KeyRing",
    "MicroBatcher",
    "Principal",
    "create_app",
    "hash_key",
    "new_key",
    "status_of",
]
