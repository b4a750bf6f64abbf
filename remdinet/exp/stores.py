"""The two databases of a project, the MLflow tracking store and the Optuna storage, as URLs:
shown without their password, checked before any work starts, and kept apart.

A URL may carry a password (``postgresql://user:PASSWORD@host/db``, or ``?password=`` in the
query). Every message, banner and stored attribute shows :func:`mask_url` of it instead, and
text from a database driver passes through :func:`redact`, so the password is never printed,
logged to MLflow or written to the Optuna database.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote

import sqlalchemy

from remdinet.config import ConfigError
from remdinet.paths import writable_dir

MASK = "***"
SECRET_QUERY_KEYS = frozenset({"password", "pwd", "passwd"})
# the SQLAlchemy backends MLflow and Optuna can keep their tables in
DATABASE_SCHEMES = frozenset({"sqlite", "postgresql", "postgres", "mysql", "mssql", "oracle"})
DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mssql": 1433,
                 "oracle": 1521}
LOOPBACK = frozenset({"", "localhost", "127.0.0.1", "::1"})
MLFLOW, OPTUNA = "MLflow tracking URI", "Optuna storage"  # the two stores, as messages name them
# tables that only one of the two keeps (both keep an alembic_version table of their own schema)
_OWN_TABLES = {MLFLOW: frozenset({"experiments", "runs"}), OPTUNA: frozenset({"studies", "trials"})}
_HOLDS = {MLFLOW: "an MLflow tracking store", OPTUNA: "an Optuna storage"}


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL; None for any other URL."""
    if not url.startswith("sqlite:///"):
        return None
    return Path(url[len("sqlite:///"):])


# user info as SQLAlchemy reads it: the password runs from the first ':' to the next '@', so it
# may hold '/', '?' or '#' that a strict URL parser would take for the path
_USERINFO = re.compile(r"^(?P<head>[A-Za-z][\w+.-]*://[^:/@?#]*):(?P<password>[^@]*)@")


def _query_pieces(url: str) -> tuple[str, list[tuple[str, str, str]]]:
    """``url`` before its query, and the query's ``(piece, key, value)`` items."""
    head, sep, query = url.partition("?")
    if not sep:
        return url, []
    items = []
    for piece in query.split("&"):
        key, _, value = piece.partition("=")
        items.append((piece, key, value))
    return head, items


def _is_secret(key: str, value: str) -> bool:
    return key.lower() in SECRET_QUERY_KEYS and bool(value)


def mask_url(url: str) -> str:
    """``url`` with its password (user info or query parameter) replaced by ``***``."""
    masked = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", url, count=1)
    head, items = _query_pieces(masked)
    if not items:
        return masked
    return head + "?" + "&".join(f"{key}={MASK}" if _is_secret(key, value) else piece
                                 for piece, key, value in items)


def redact(text: str, url: str) -> str:
    """``text`` (a driver's or library's message about ``url``) without the URL's password."""
    text = text.replace(url, mask_url(url))
    match = _USERINFO.match(url)
    secrets = [match["password"]] if match else []
    secrets += [value for _, key, value in _query_pieces(url)[1] if _is_secret(key, value)]
    # as written in the URL and as the driver received it (percent-decoded)
    for secret in sorted({v for s in secrets for v in (s, unquote(s)) if v}, key=len,
                         reverse=True):
        text = text.replace(secret, MASK)
    return text


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""


def is_database(url: str) -> bool:
    """Whether ``url`` names a SQL database (as opposed to an MLflow server or folder)."""
    return _scheme(url) in DATABASE_SCHEMES


def _identity(url: str) -> tuple | None:
    """What makes two URLs the same database: the file of SQLite, else server and name."""
    if not is_database(url):
        return None
    if _scheme(url) == "sqlite":
        db = sqlite_path(url.split("?", 1)[0])
        return None if db is None else ("sqlite", str(db.resolve()))
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return None
    backend = parsed.get_backend_name()
    host = (parsed.host or "").lower()
    return (backend, "localhost" if host in LOOPBACK else host,
            parsed.port or DEFAULT_PORTS.get(backend), parsed.database)


def same_database(a: str, b: str) -> bool:
    """Whether two URLs name one database (the same SQLite file; the same server, port and
    database name otherwise)."""
    ida = _identity(a)
    return ida is not None and ida == _identity(b)


def check_distinct(storage_url: str, tracking_uri: str) -> None:
    """MLflow and Optuna each keep a schema, with its own version table, in their database: in
    one database they break each other's migrations. Refused before either is opened."""
    if same_database(storage_url, tracking_uri):
        raise ConfigError(f"the Optuna storage (--storage {mask_url(storage_url)}) and the MLflow "
                          f"tracking URI (--tracking-uri {mask_url(tracking_uri)}) are one "
                          f"database; use two databases (e.g. .../optuna and .../mlflow)")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def may_write(url: str) -> bool:
    """Whether the file system lets this process change the store at ``url``: a SQLite store
    whose folder and file are writable; any other store counts as writable (a server shows its
    account's rights only when it is written to)."""
    db = sqlite_path(url)
    if db is None:
        return True
    return os.access(db.parent, os.W_OK | os.X_OK) and (not db.exists() or os.access(db, os.W_OK))


def check_store(url: str, store: str, writes: bool = True) -> None:
    """Prove that ``url`` can serve as ``store`` (:data:`MLFLOW` or :data:`OPTUNA`) before
    anything is created in it; else a one-line :class:`ConfigError` naming the store and the
    masked URL.

    SQLite (``writes``): its folder must be writable (SQLite writes its journal beside the file)
    and the file too. Any other database: one connection is opened, so that a wrong password, an
    unknown host or database, or a URL no driver understands fails here at once (MLflow itself
    retries a failing connection for about two minutes before it gives up). An existing database
    that holds the other store's tables is refused (see :func:`check_distinct`)."""
    db = sqlite_path(url)
    if db is not None:
        if writes:
            writable_dir(db.parent, f"{store} {url}")
            if db.exists() and not os.access(db, os.W_OK):
                raise ConfigError(f"{store} {url}: the database file is read-only")
        if not db.exists():
            return  # a new store: nothing in it yet
    shown = mask_url(url)
    try:
        engine = sqlalchemy.create_engine(url)
    except (sqlalchemy.exc.ArgumentError, ImportError) as exc:
        raise ConfigError(f"{store} {shown}: not a database URL that can be opened "
                          f"({_one_line(redact(str(exc), url))})") from None
    try:
        with engine.connect() as conn:
            tables = set(sqlalchemy.inspect(conn).get_table_names())
    except sqlalchemy.exc.DBAPIError as exc:
        reason = _one_line(redact(str(exc.orig), url))
        raise ConfigError(f"{store} {shown}: cannot connect: {reason}") from None
    finally:
        engine.dispose()
    other = OPTUNA if store == MLFLOW else MLFLOW
    if _OWN_TABLES[other] <= tables:
        raise ConfigError(f"{store} {shown}: this database holds {_HOLDS[other]} (tables "
                          f"{', '.join(sorted(_OWN_TABLES[other]))}); MLflow and Optuna need a "
                          f"database each")
