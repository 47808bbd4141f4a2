"""Dense encoders by name, so settings files and CLI flags pick one without code changes."""

from __future__ import annotations

from leanrank.encode.base import DenseEncoder
from leanrank.errors import ConfigError

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
