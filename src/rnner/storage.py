"""Optuna storages for sweeps that span processes and machines: `open_storage(url)`.

`sqlite:///PATH` (one machine), `journal:PATH` (a file every worker sees, e.g. on NFS), or a
database server: `postgresql://USER:PASSWORD@HOST:PORT/DB` (also `postgres://`) and
`mysql://...`. Three things Optuna's own `RDBStorage` leaves to the user are done here:

- Driver: SQLAlchemy maps a bare `postgresql://` to one driver (psycopg 3 since SQLAlchemy
  2.1), whatever is installed. We pick the installed one (psycopg 3, else psycopg2); with none,
  a one-line error says `pip install "rnner[postgres]"`.
- Races: workers started together on a fresh database all create Optuna's schema at once
  (PostgreSQL then fails one of them on `CREATE TYPE studydirection`). On PostgreSQL one
  creator holds an advisory lock while joiners wait for it; elsewhere a lost race is retried.
- Dropped connections: every storage call that fails to reach the server is retried with a
  backoff for `RNNER_STORAGE_RETRY_SECONDS` (default 60) — long enough for a server restart —
  and then fails with one line naming the database, never a hang (connections carry a connect
  timeout and TCP keepalives). A write whose commit was cut off may be applied twice: at worst
  a spare trial that the abandoned-trial sweep of `rnner tune` fails later.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import inspect
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .config import ConfigError

if TYPE_CHECKING:
    import optuna

RETRY_SECONDS_ENV = "RNNER_STORAGE_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 60.0
CONNECT_TIMEOUT_SECONDS = 10
SCHEMA_LOCK_SECONDS = 120
# pg_advisory_lock key held while Optuna creates its tables ("rnner" in ASCII).
SCHEMA_LOCK_KEY = 0x726E6E6572
PG_DRIVERS = (("psycopg", "psycopg"), ("psycopg2", "psycopg2"))  # (SQLAlchemy name, module)
INSTALL_HINT = 'pip install "rnner[postgres]"'

T = TypeVar("T")


class StorageError(ConfigError):
    """A storage URL that cannot be used, or a database that stays out of reach."""

    def __init__(self, message: str):
        super().__init__("storage", message)
        self.args = (f"storage: {message}",)


def retry_seconds() -> float:
    raw = os.environ.get(RETRY_SECONDS_ENV, "")
    try:
        return float(raw) if raw else DEFAULT_RETRY_SECONDS
    except ValueError:
        raise StorageError(f"{RETRY_SECONDS_ENV}={raw!r} is not a number of seconds") from None


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def resolve_url(url: str) -> str:
    """The URL with a PostgreSQL driver that is installed; a StorageError if none is."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise StorageError(
            f"{url!r} is not a storage URL: use sqlite:///PATH, "
            "postgresql://..., mysql://... or journal:PATH"
        )
    dialect, _, driver = scheme.partition("+")
    if dialect not in ("postgresql", "postgres"):
        return url
    known = dict(PG_DRIVERS)
    if driver:
        if driver in known and not _installed(known[driver]):
            raise StorageError(
                f"{scheme}:// needs the {known[driver]} module: "
                f"{INSTALL_HINT} (or name the installed driver in the URL)"
            )
        return f"postgresql+{driver}://{rest}"
    for name, module in PG_DRIVERS:
        if _installed(module):
            return f"postgresql+{name}://{rest}"
    raise StorageError(f"{scheme}:// needs a PostgreSQL driver: {INSTALL_HINT}")


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL: nothing to hide
        return url


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 120}}  # workers wait for the write lock
    kwargs: dict[str, Any] = {"pool_pre_ping": True}  # a pooled connection may have died
    if url.startswith("postgresql"):
        # libpq options (psycopg 3 and psycopg2 alike): no connect or dead peer waits forever
        kwargs["connect_args"] = {
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }
    return kwargs


def _unreachable(e: BaseException) -> bool:
    """Whether `e` (or what it wraps) says the server could not be reached or dropped us."""
    import sqlalchemy.exc as sa

    seen: set[int] = set()
    link: BaseException | None = e
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, sa.DBAPIError) and (
            link.connection_invalidated or isinstance(link, sa.OperationalError | sa.InterfaceError)
        ):
            return True
        link = link.__cause__ or link.__context__
    return False


def _first_line(e: BaseException) -> str:
    root = e
    while root.__cause__ is not None:
        root = root.__cause__
    orig = getattr(root, "orig", None) or root
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


def _with_retries(call: Callable[[], T], url: str, budget: float) -> T:
    deadline = time.monotonic() + budget
    pause = 0.25
    while True:
        try:
            return call()
        except Exception as e:
            if not _unreachable(e):
                raise
            if time.monotonic() + pause > deadline:
                raise StorageError(
                    f"lost the connection to {redacted(url)} for {budget:.0f} s "
                    f"({_first_line(e)}); rerun the same command to resume "
                    "once the database is back"
                ) from e
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def _retrying(method: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
        return _with_retries(
            lambda: method(self, *args, **kwargs), self.url, self.rnner_retry_seconds
        )

    return wrapper


_STORAGE_CLASS: type | None = None


def _storage_class() -> type:
    """RDBStorage whose public methods ride out a dropped connection (made once, lazily)."""
    global _STORAGE_CLASS
    if _STORAGE_CLASS is None:
        from optuna.storages import RDBStorage

        methods = {
            name: _retrying(fn)
            for name, fn in inspect.getmembers(RDBStorage, inspect.isfunction)
            if not name.startswith("_")
        }
        _STORAGE_CLASS = type(
            "RetryingRDBStorage",
            (RDBStorage,),
            {"rnner_retry_seconds": DEFAULT_RETRY_SECONDS, **methods, "__module__": __name__},
        )
    return _STORAGE_CLASS


def _create_schema_alone(url: str, kwargs: dict[str, Any], create: Callable[[], T]) -> T:
    """Run `create` while holding a PostgreSQL advisory lock, so one worker creates the
    schema and the others wait for it and find it made."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, **kwargs)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(f"SET lock_timeout = '{SCHEMA_LOCK_SECONDS}s'"))
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": SCHEMA_LOCK_KEY})
            try:
                return create()
            finally:
                conn.execute(
                    sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": SCHEMA_LOCK_KEY}
                )
    finally:
        engine.dispose()


def _lost_race(e: BaseException) -> bool:
    """Another process created the same table/type between our check and our CREATE."""
    import sqlalchemy.exc as sa

    text = str(e).lower()
    return isinstance(e, sa.IntegrityError | sa.ProgrammingError | sa.OperationalError) and (
        "already exists" in text or "duplicate" in text
    )


@contextlib.contextmanager
def surfacing_storage_errors() -> Iterator[None]:
    """Re-raise the StorageError under whatever Optuna raised instead: with the database gone
    its trial post-processing masks ours with an UnboundLocalError (Optuna 4 and 5)."""
    try:
        yield
    except StorageError:
        raise
    except Exception as e:
        seen: set[int] = set()
        cause: BaseException | None = e
        while cause is not None and id(cause) not in seen:
            if isinstance(cause, StorageError):
                raise cause from None
            seen.add(id(cause))
            cause = cause.__cause__ or cause.__context__
        raise


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """The Optuna storage for `url` (see the module docstring for the forms)."""
    import optuna

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        file = url.removeprefix("journal:").removeprefix("//")
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(file))
    url = resolve_url(url)
    kwargs = _engine_kwargs(url)
    budget = retry_seconds()
    cls = _storage_class()

    def create() -> Any:
        storage = cls(url, engine_kwargs=kwargs)
        storage.rnner_retry_seconds = budget
        return storage

    def create_safely() -> Any:
        if url.startswith("postgresql"):
            return _create_schema_alone(url, kwargs, create)
        for attempt in range(5):
            try:
                return create()
            except Exception as e:
                if not _lost_race(e) or attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    try:
        return _with_retries(create_safely, url, budget)
    except ImportError as e:  # a MySQL URL without its driver, say
        raise StorageError(
            f"{redacted(url)}: no database driver ({e}); install the driver the URL names"
        ) from None
