"""Dense and sparse encoders by name, so settings files and CLI flags pick one without code changes."""

from __future__ import annotations

from leanrank.encode.base import DenseEncoder, SparseEncoder
from leanrank.encode.cached import QueryCache
from leanrank.errors import ConfigError
from leanrank.settings import SparseKind

KNOWN = ("e5", "bge-m3:PATH_OR_HUB_ID", "tei:URL")


def dense_encoder(spec: str) -> DenseEncoder:
    """`e5` (bundled, offline), `bge-m3:PATH_OR_HUB_ID` (needs the `torch` extra) or `tei:URL`."""
    kind, _, arg = spec.partition(":")
    if spec == "e5":
        from leanrank.encode.e5 import E5SmallEncoder

        return E5SmallEncoder()
    if kind == "bge-m3" and arg:
        from leanrank.encode.bge_m3 import BgeM3Encoder

        return BgeM3Encoder(arg)
    if kind == "tei" and arg:
        from leanrank.encode.tei import TeiEmbedEncoder

        return TeiEmbedEncoder(arg)
    raise ConfigError(f"unknown dense encoder {spec!r}; known: {', '.join(KNOWN)}")


def sparse_encoder(kind: SparseKind, dense: DenseEncoder) -> SparseEncoder:
    """The first stage's sparse encoder: leanrank's BM25 analyser, or for `bge-m3` the learned lexical
    weights of `dense`, which must then be a bge-m3 encoder (one model, one forward pass for both).

    Raises ConfigError when `bge-m3` is asked of another encoder, or of a model without its sparse head.
    """
    if kind == "bm25":
        from leanrank.encode.bm25 import Bm25Encoder

        return Bm25Encoder()
    from leanrank.encode.bge_m3 import BgeM3Encoder

    model = dense.encoder if isinstance(dense, QueryCache) else dense
    if not isinstance(model, BgeM3Encoder):
        raise ConfigError(
            f"sparse = 'bge-m3' takes the lexical weights of the bge-m3 model itself: set encoder = "
            f"'bge-m3:PATH_OR_HUB_ID' (the encoder is {dense.name!r}), or use sparse = 'bm25'"
        )
    return model.lexical()
