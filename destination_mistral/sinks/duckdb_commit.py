"""How a DuckDB commit writes: one transaction per commit, so that a crash never leaves a record
without its cache row or the reverse, tried again with a roomy buffer pool when a huge record runs
out of memory; and a batch's rows appended, or (append_dedup) upserted by primary key and cursor
(duckdb_dedup.py)."""

from __future__ import annotations

from collections.abc import Callable

import duckdb

from destination_mistral.sinks.base import WriteItem
from destination_mistral.sinks.duckdb_connection import MEMORY_LIMIT, ROOMY_MEMORY_LIMIT
from destination_mistral.sinks.duckdb_dedup import DELETED, SEQ, upsert
from destination_mistral.sinks.duckdb_rows import arrow_batch
from destination_mistral.sinks.duckdb_tables import column_exprs, quoted
from destination_mistral.sinks.schema import StreamPlan

BATCH_VIEW = "_mistral_batch_rows"


# How DuckDB words running out of its buffer pool when it is not an OutOfMemoryException: a COMMIT
# that cannot pin the blocks it writes fails with a TransactionException saying so.
_OUT_OF_MEMORY_TEXTS = ("failed to pin block", "could not allocate block", "out of memory")


def commit_atomically(con, write: Callable[[], None]) -> None:
    """Runs `write` in one transaction, committed, or rolled back when it raises."""
    try:
        _in_transaction(con, write)
    except duckdb.Error as error:
        if not isinstance(error, duckdb.OutOfMemoryException) and not any(
            text in str(error).lower() for text in _OUT_OF_MEMORY_TEXTS
        ):
            raise
        # A record of tens of MB needs several times its size while its JSON is cast, and a commit
        # holding tens of MB of long strings pins them all until it is written; the buffer pool is
        # kept small for the common case, and made roomy only for this commit.
        con.execute(f"SET memory_limit = '{ROOMY_MEMORY_LIMIT}'")
        try:
            _in_transaction(con, write)
        finally:
            con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")


def _in_transaction(con, write: Callable[[], None]) -> None:
    con.begin()
    try:
        write()
        con.commit()
    except BaseException:
        try:
            con.rollback()
        except duckdb.Error:
            pass  # a failed COMMIT has already ended the transaction; its own error is the one to raise
        raise


def insert_batch(con, plan: StreamPlan, items: list[WriteItem], target: str, target_types: dict[str, str]) -> None:
    """Writes the items to `target` (a quoted schema.table) whose columns have `target_types`."""
    rows, columns = arrow_batch(plan, items)
    names, exprs = column_exprs(plan, target_types)
    source = f"(SELECT {', '.join(columns)} FROM {BATCH_VIEW})"
    con.register(BATCH_VIEW, rows)
    try:
        _insert_rows(con, plan, target, names, exprs, source, target_types)
    finally:
        try:
            con.unregister(BATCH_VIEW)
        except duckdb.Error:
            pass  # an aborted transaction refuses this too; the insert's own error is the one to see


def _insert_rows(
    con, plan: StreamPlan, target: str, names: list[str], exprs: list[str], source: str, types: dict[str, str]
) -> None:
    column_list = ", ".join(quoted(n) for n in names)
    select = ", ".join(f"{e} AS {quoted(n)}" for e, n in zip(exprs, names, strict=False))
    if plan.sync_mode != "append_dedup":
        con.execute(f"INSERT INTO {target} ({column_list}) SELECT {select} FROM {source}")
        return
    upsert(con, plan, target, names, f"SELECT {select}, {quoted(SEQ)}, {quoted(DELETED)} FROM {source}", types)
