"""The ledger's schema, as Alembic revisions shipped in the package and applied when a ledger opens.

Every ledger's tables share one name prefix (`Ledger(table=...)`, default `leanrank_rerank_calls`), so the
revisions take it as an argument and each prefix keeps its own version table, `<prefix>_alembic_version`:
several ledgers (tests, tenants of one database) migrate independently. Revision 0001 is the schema
leanrank created before it used migrations; it creates only what is missing, so a database made by that
code is recognised and carried forward in place, rows untouched. `upgrade` runs inside the caller's
transaction, which holds the database's write lock (SQLite `BEGIN IMMEDIATE`, a PostgreSQL advisory lock):
two processes opening an old ledger at once upgrade it once, the second finds it done.
"""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext, RevisionStep
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection

from leanrank.errors import ConfigError

_SCRIPTS = ScriptDirectory(str(Path(__file__).parent))


def version_table(prefix: str) -> str:
    """The table recording which revision a ledger's schema is at."""
    return f"{prefix}_alembic_version"


def head() -> str:
    """The newest revision this leanrank knows."""
    revision = _SCRIPTS.get_current_head()
    assert revision is not None
    return revision


def current(conn: Connection, prefix: str) -> str | None:
    """The revision the ledger `prefix` is at; None for a database never migrated (new, or made before
    migrations)."""
    context = MigrationContext.configure(conn, opts={"version_table": version_table(prefix)})
    return context.get_current_revision()


def upgrade(conn: Connection, prefix: str, target: str = "head") -> None:
    """Apply the revisions from the ledger's current one up to `target`, in `conn`'s open transaction.

    Raises `ConfigError` when the database is at a revision this leanrank does not know (a newer leanrank
    migrated it): the schema must not be changed, nor used, by code that does not know it.
    """
    at = current(conn, prefix)
    if at is not None:
        try:
            _SCRIPTS.get_revision(at)
        except CommandError:
            raise ConfigError(
                f"the ledger's schema is at revision {at!r}, which this leanrank does not know (its newest "
                f"is {head()!r}); a newer leanrank upgraded it: upgrade leanrank"
            ) from None

    def steps(revision: str, _context: MigrationContext) -> list[RevisionStep]:
        return _SCRIPTS._upgrade_revs(target, revision)  # what `alembic upgrade` itself calls

    with EnvironmentContext(Config(), _SCRIPTS, fn=steps, destination_rev=target) as env:
        env.configure(connection=conn, version_table=version_table(prefix))
        env.run_migrations(prefix=prefix)
