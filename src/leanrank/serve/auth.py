"""API keys: stored as sha256 hashes with scopes, presented as `Authorization: Bearer <key>`.

A key is 32 random bytes, so a plain sha256 is enough (no password stretching needed: there is nothing
to guess); a stolen settings file gives no usable key. The presented key's hash is compared with every
stored hash in constant time, and only the key's id ever reaches logs, metrics and the ledger.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from leanrank.errors import ConfigError, InputError
from leanrank.pipeline import check_course_id
from leanrank.serve.errors import ForbiddenError, UnauthorizedError
from leanrank.settings import ServeSettings

ADMIN = "admin"
METRICS = "metrics"
_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z-]{0,19}")  # Basic, Digest, Token: echoed back, unlike a key


def hash_key(key: str) -> str:
    """The stored form of a key: sha256 hex of its UTF-8 bytes."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id (the tenant in the ledger) and what it may touch."""

    key_id: str
    admin: bool
    courses: frozenset[str]
    metrics: bool = False

    def may_use(self, course: str) -> bool:
        return self.admin or course in self.courses

    def check_course(self, course: str) -> str:
        """`course` if this key may use it; 403 otherwise (the same answer whether it exists or not)."""
        if not self.may_use(course):
            raise ForbiddenError(f"key {self.key_id!r} is not allowed to use course {course!r}")
        return course

    def check_admin(self, what: str) -> None:
        if not self.admin:
            raise ForbiddenError(f"{what} needs an admin key")

    def check_metrics(self) -> None:
        """Prometheus scrapers get a key of their own (scope `metrics`) that opens nothing else."""
        if not (self.admin or self.metrics):
            raise ForbiddenError("metrics need an admin key or a key with the `metrics` scope")

    def visible(self, courses: Iterable[str]) -> list[str]:
        """The subset of `courses` this key may see, sorted."""
        return sorted(c for c in courses if self.may_use(c))


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: bytes
    principal: Principal


def parse_entry(line: str) -> tuple[str, Principal]:
    """`ID:SHA256_HEX:SCOPES` → (hash, principal); SCOPES is `admin`, `metrics` or comma-separated course
    ids."""
    parts = line.strip().split(":")
    if len(parts) != 3:
        raise ConfigError("an API key entry is ID:SHA256_HEX:SCOPES (the key itself is never stored)")
    key_id, digest, scopes = parts
    if not _KEY_ID.match(key_id):
        raise ConfigError(f"API key id {key_id!r}: use 1-64 letters, digits, '_', '.' or '-'")
    if not _HEX64.match(digest):
        raise ConfigError(f"API key {key_id!r}: the hash must be 64 lowercase hex digits (sha256)")
    names = [s.strip() for s in scopes.split(",") if s.strip()]
    if not names:
        raise ConfigError(f"API key {key_id!r}: no scopes; use `admin` or course ids")
    if ADMIN in names:
        if len(names) > 1:
            raise ConfigError(f"API key {key_id!r}: `admin` already covers every course")
        return digest, Principal(key_id, True, frozenset())
    if METRICS in names:
        if len(names) > 1:
            raise ConfigError(f"API key {key_id!r}: a `metrics` key reads metrics only; give it no courses")
        return digest, Principal(key_id, False, frozenset(), metrics=True)
    try:
        courses = frozenset(check_course_id(name) for name in names)
    except InputError as exc:
        raise ConfigError(f"API key {key_id!r}: {exc}") from None
    return digest, Principal(key_id, False, courses)


class KeyRing:
    """The configured keys; `authenticate` maps a presented key to its principal or raises 401."""

    def __init__(self, entries: Iterable[str]) -> None:
        parsed: list[_Entry] = []
        ids: set[str] = set()
        for line in entries:
            digest, principal = parse_entry(line)
            if principal.key_id in ids:
                raise ConfigError(f"API key id {principal.key_id!r} appears twice")
            ids.add(principal.key_id)
            parsed.append(_Entry(bytes.fromhex(digest), principal))
        if not parsed:
            raise ConfigError(
                "no API keys configured: add one to serve.api_keys (LEANRANK_SERVE__API_KEYS) or "
                "serve.api_keys_file; `leanrank serve --new-key ID:admin` prints one"
            )
        self._entries = tuple(parsed)

    @classmethod
    def from_settings(cls, settings: ServeSettings) -> KeyRing:
        lines = list(settings.api_keys)
        if settings.api_keys_file is not None:
            try:
                text = settings.api_keys_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"serve.api_keys_file: cannot read it ({exc.strerror})") from None
            for raw in text.splitlines():
                line = raw.split("#", 1)[0].strip()
                if line:
                    lines.append(line)
        return cls(lines)

    @property
    def key_ids(self) -> list[str]:
        """The configured keys' ids (never the keys)."""
        return [entry.principal.key_id for entry in self._entries]

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an `Authorization: Bearer <key>` header value; 401 for anything else."""
        scheme, space, key = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise UnauthorizedError(_where_the_key_goes(scheme, bool(space)))
        digest = hashlib.sha256(key.strip().encode()).digest()
        found: Principal | None = None
        for entry in self._entries:  # no early exit: the time taken does not depend on which entry matches
            if hmac.compare_digest(digest, entry.digest):
                found = entry.principal
        if found is None:
            raise UnauthorizedError("invalid API key")
        return found


def _where_the_key_goes(scheme: str, has_credentials: bool) -> str:
    """The 401 message for an `Authorization` header without a bearer key: a credential sent another way
    (`Basic …`, a bare key) is told where the key goes, not that it is missing. Only a scheme-like first
    word is echoed, so a key sent as one is never repeated back."""
    if not scheme or scheme.lower() == "bearer":
        return "missing API key: send `Authorization: Bearer <key>`"
    if has_credentials and _SCHEME.fullmatch(scheme):
        return f"`Authorization: {scheme}` is not accepted: the API key goes in `Authorization: Bearer <key>`"
    return "the API key goes in `Authorization: Bearer <key>`, with the word Bearer"


def new_key(key_id: str, scopes: str) -> tuple[str, str]:
    """A fresh random key and its settings entry `ID:SHA256_HEX:SCOPES` (validated like any entry)."""
    key = "lr_" + secrets.token_urlsafe(32)
    entry = f"{key_id}:{hash_key(key)}:{scopes}"
    parse_entry(entry)
    return key, entry
