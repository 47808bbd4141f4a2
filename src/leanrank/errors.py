"""The exception tree: callers catch at the level they care about.

LeanrankError
├── ConfigError             settings or names that cannot work
├── InputError              the caller sent something unusable (→ 4xx in the service)
│   ├── EmptyQueryError
│   ├── QueryTooLongError
│   ├── UnknownCourseError
│   └── DocumentError       one file could not be ingested (others go on)
│       ├── UnsupportedFileTypeError
│       ├── EmptyDocumentError
│       ├── BinaryDocumentError
│       ├── FileTooLargeError
│       └── EncodingError
├── DependencyError         an optional extra is not installed
├── RequestConflictError    a request id already in use (`leanrank.cost.ledger`; → 409)
├── BackendError            an encoder, reranker or remote server failed (→ 424/502)
└── StoreError              the index could not be read or written
    ├── StorageFullError    a write refused: the disk under data_dir is (nearly) full
    └── IndexLockedError    the embedded index is open in another process
"""

from __future__ import annotations

from collections.abc import Iterable


class LeanrankError(Exception):
    """Root of every error leanrank raises on purpose."""


class ConfigError(LeanrankError):
    """A setting, model name or combination of options that cannot work."""


class InputError(LeanrankError):
    """The caller sent something unusable; the message says what and how to fix it."""


class EmptyQueryError(InputError):
    """A query with no searchable text."""


class QueryTooLongError(InputError):
    """A query longer than the configured limit."""


class UnknownCourseError(InputError):
    """A course id with nothing indexed under it; the message names the indexed courses `known`, so a typo
    shows the name meant. The service narrows `known` to what the caller's key may see before answering."""

    def __init__(self, course: str, known: Iterable[str] = ()) -> None:
        self.course = course
        self.known = tuple(sorted(known))
        super().__init__(f"unknown course {course!r}; indexed courses: {', '.join(self.known) or 'none yet'}")

    def __reduce__(self) -> tuple[type[UnknownCourseError], tuple[str, tuple[str, ...]]]:
        # Copies and pickles (a process pool's results) rebuild from the fields, not from the message.
        return (type(self), (self.course, self.known))


class DocumentError(InputError):
    """One source file could not be ingested; ingestion of the other files continues."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[type[DocumentError], tuple[str, str]]:
        return (type(self), (self.path, self.reason))


class UnsupportedFileTypeError(DocumentError):
    """A file extension no loader handles."""


class EmptyDocumentError(DocumentError):
    """A file with no text once loaded."""


class BinaryDocumentError(DocumentError):
    """A file that claims to be text but holds binary data."""


class FileTooLargeError(DocumentError):
    """A file above `ingest.max_file_bytes`."""


class EncodingError(DocumentError):
    """A text file whose encoding could not be determined."""


class DependencyError(LeanrankError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed; install it with: pip install 'leanrank[{extra}]'")
        self.package = package
        self.extra = extra


class BackendError(LeanrankError):
    """An encoder, reranker or remote model server failed.

    `unconfirmed_usd` is what the cost meter recorded for the failed call as possibly billed anyway (US
    dollars at its estimate, the ledger's `<stage>:unconfirmed` records); None: nothing recorded or priced.
    """

    unconfirmed_usd: float | None = None


class StoreError(LeanrankError):
    """The index could not be read or written."""


class StorageFullError(StoreError):
    """A write refused before it started because the disk is too full to hold it; reads go on."""


class IndexLockedError(StoreError):
    """The embedded index is open in another process: the user stops it or picks another data directory."""
