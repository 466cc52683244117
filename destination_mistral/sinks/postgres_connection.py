"""Connecting to PostgreSQL for the destination, with psycopg: each way a connection fails worded as
the field to fix, the password never in a message (psycopg's own texts do not quote it, and every
text that leaves here is masked all the same), and the failures of the server or the connection
told apart from a record the server refuses. Also the check that the output can be written."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from destination_mistral.settings import OutputSettings, PostgresSettings, mask_error
from mistral_connection.errors import config_error, transient_error

logger = logging.getLogger("airbyte")

CONNECT_TIMEOUT_SECONDS = 15
# SQLSTATE classes in which the server or the connection failed rather than a record: connection
# exceptions, insufficient resources (a full disk, out of memory), operator intervention (a
# shutdown), system errors (I/O) and internal errors.
STORE_FAILURE_CLASSES = ("08", "53", "57", "58", "XX")
_UNREACHABLE = ("connection refused", "timeout expired", "could not translate host name", "no route to host")


class PostgresUnavailable(ConnectionError):
    """The server or the connection to it failed. An OSError, which the sync layer takes for a
    failure of the store (the sync stops with no further STATE), never for one record's."""


def connect(settings: PostgresSettings, autocommit: bool = True) -> psycopg.Connection:
    """A connection in autocommit mode: each transaction is opened explicitly (con.transaction())."""
    options = {
        "host": settings.host,
        "port": settings.port,
        "dbname": settings.database,
        "user": settings.username,
        "password": settings.password,
        "sslmode": settings.ssl_mode,
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "application_name": "destination-mistral",
    }
    if settings.ssl_mode in ("verify-ca", "verify-full"):
        options["sslrootcert"] = "system"  # the machine's certificate authorities, as browsers use
    try:
        return psycopg.connect(autocommit=autocommit, **options)
    except psycopg.Error as error:
        raise connection_error(settings, error) from None


def connection_error(settings: PostgresSettings, error: psycopg.Error) -> Exception:
    text = str(error).lower()
    first = _first_line(error)
    where = f"PostgreSQL at {settings.host}:{settings.port}"
    if error.sqlstate == "28P01" or "password authentication failed" in text or "no password" in text:
        failure = config_error(
            f"{where} refused the login of user {settings.username!r}: check `output.username` and `output.password`."
        )
    elif error.sqlstate == "3D000" or ("database" in text and "does not exist" in text):
        failure = config_error(f"{where} has no database {settings.database!r}: check `output.database`.")
    elif "ssl" in text:
        failure = config_error(f"{where} could not agree on SSL ({first}): check `output.ssl_mode`.")
    elif any(words in text for words in _UNREACHABLE):
        failure = transient_error(
            f"{where} could not be reached ({first}): check `output.host` and `output.port`, and that the server "
            "accepts connections from this machine."
        )
    else:
        failure = config_error(f"{where} refused the connection ({first}): check the `output` settings.")
    mask_error(failure, settings.password)
    return failure


@contextmanager
def store_failures(settings: PostgresSettings) -> Iterator[None]:
    """Inside, a failure of the server or the connection leaves as PostgresUnavailable, and any
    other database error (a record the server refuses) as itself; both without the password."""
    try:
        yield
    except (psycopg.OperationalError, psycopg.InterfaceError) as error:
        raise _unavailable(settings, error) from None
    except psycopg.Error as error:
        if (error.sqlstate or "")[:2] in STORE_FAILURE_CLASSES:
            raise _unavailable(settings, error) from None
        mask_error(error, settings.password)
        raise


def _unavailable(settings: PostgresSettings, error: psycopg.Error) -> PostgresUnavailable:
    failure = PostgresUnavailable(f"{type(error).__name__}: {_first_line(error)}")
    mask_error(failure, settings.password)
    return failure


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__


def check_writable(output: OutputSettings) -> None:
    """Connects, and creates and drops a table in the default schema."""
    from destination_mistral.sinks.postgres_tables import ident, vector_support

    settings = output.postgres
    with connect(settings) as con:
        try:
            with con.transaction():
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(output.schema)}")
                con.execute(f"CREATE TABLE {ident(output.schema)}._mistral_check (x integer)")
                vectors = vector_support(con)
                con.execute(f"DROP TABLE {ident(output.schema)}._mistral_check")
        except psycopg.Error as error:
            raise cannot_create(settings, output.schema, error) from None
    if settings.hnsw_index and vectors.schema is None:
        raise index_without_vectors(settings)


def cannot_create(settings: PostgresSettings, schema: str, error: psycopg.Error) -> Exception:
    """The config error of a user that may not create the output's schema or tables."""
    failure = config_error(
        f"User {settings.username!r} cannot create tables in schema {schema!r} of database "
        f"{settings.database!r} ({_first_line(error)}): grant it CREATE on the database (or the schema), or "
        "choose another `output.schema`."
    )
    mask_error(failure, settings.password)
    return failure


def index_without_vectors(settings: PostgresSettings) -> Exception:
    return config_error(
        "`output.hnsw_index` needs the vector extension (pgvector), which this database does not have and this user "
        f"cannot create: ask an administrator to run CREATE EXTENSION vector in {settings.database!r}, or turn the "
        "index off."
    )
