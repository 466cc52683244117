"""Writing a batch into the sink, and what a failed write means.

The committer releases a STATE only after the write holding every record before it returns; this
module decides what a write that raises stands for, so that no record is ever dropped between the
two:
- the store itself failed (disk full, file gone, I/O error, a connection the database invalidated):
  the sync stops with no further STATE, and the platform resends from the last one;
- one record cannot be stored (a value no column can hold, a row the store refuses): the batch is
  committed in halves until that record stands alone, and the record is stored as an error row (its
  primary key, the error, and every field named in `_airbyte_meta.changes`), like a value that does
  not fit its type. If even that row is refused, the store is at fault after all.
Runs on the database thread, like every sink call."""

from __future__ import annotations

import errno
import logging
from collections.abc import Sequence
from dataclasses import replace

from destination_mistral.enrich.results import failed
from destination_mistral.protocol.describe import first_line
from destination_mistral.sinks.base import Batches, CacheEntries, Sink, WriteItem
from destination_mistral.sinks.schema import StreamPlan
from destination_mistral.sync.progress import Counters
from mistral_connection.errors import system_error, transient_error

logger = logging.getLogger("airbyte")

# How DuckDB words the failures of the file beneath it (it raises its own exception types, with
# the operating system's text inside).
STORE_TEXTS = (
    "no space left",
    "disk quota",
    "input/output error",
    "read-only file system",
    "file too large",
    "could not write",
    "could not read",
    "database has been invalidated",
    "fatal error",
    "connection already closed",
    "i/o error",
    "ioexception",
)
DISK_FULL_TEXTS = ("no space left", "disk quota", "file too large")


def is_store_failure(error: BaseException) -> bool:
    """Whether the store, rather than a record, failed. An OSError always is; the database's own
    errors are, when they name the file or the connection."""
    if isinstance(error, OSError):  # a write to the file or directory beneath the output failed
        return True
    name = type(error).__name__.lower()
    text = str(error).lower()
    return name in ("ioexception", "fatalexception", "connectionexception") or any(t in text for t in STORE_TEXTS)


def store_error(location: str, error: BaseException) -> Exception:
    """The failure that ends the sync when the store fails: names the location, never a record."""
    text = str(error).lower()
    if any(t in text for t in DISK_FULL_TEXTS) or (
        isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    ):
        return transient_error(
            f"The output at {location} could not be written: the disk (or the file size limit) is full "
            f"({first_line(error)}). Free space and run the sync again; every record up to the last STATE is stored."
        )
    # A database server's connection (PostgreSQL) fails as a ConnectionError; a file beneath the output otherwise.
    check = (
        "that the server is up and reachable from here"
        if isinstance(error, ConnectionError)
        else "the disk and the file"
    )
    return transient_error(
        f"The output at {location} could not be written ({first_line(error)}). Check {check}, then run the sync "
        "again; every record up to the last STATE is stored."
    )


def stand_in(plan: StreamPlan, item: WriteItem, error: BaseException) -> WriteItem:
    """The row that takes the place of a record the store refused: its primary key and cursor (so
    that append_dedup still replaces the right row, and only an older one), its error, and each
    field it lost."""
    kept = {
        name: item.record.get(name)
        for name in [*plan.primary_key, *plan.record_key, *([plan.cursor_field] if plan.cursor_field else [])]
        if isinstance(item.record.get(name), (str, int, float, bool))
    }
    lost = [name for name in item.record if name not in kept]
    changes = list(item.changes or []) + [
        {"field": name, "change": "NULLED", "reason": "DESTINATION_SERIALIZATION_ERROR"} for name in lost
    ]
    message = f"the record could not be stored ({first_line(error, 120)})"
    return replace(item, record=kept, changes=changes, result=failed(message, kind="input"))


class StoreWriter:
    """Writes batches into one sink and turns a failure into a record's error row or a stopped sync."""

    def __init__(self, sink: Sink, counters: Counters | None = None) -> None:
        self.sink = sink
        self.counters = counters or Counters()  # refused: records stored as error rows because the store refused them

    def commit(self, batches: Batches, entries: CacheEntries, completes: Sequence[StreamPlan] = ()) -> None:
        entries = list(entries)
        try:
            self.sink.commit(batches, entries, completes)
            return
        except Exception as error:  # noqa: BLE001 - classified just below
            if is_store_failure(error) or not any(items for _, items in batches):
                raise self._fatal(error) from None
        # A record of the batch cannot be stored: narrow it down, stream by stream, half by half.
        for plan, items in batches:
            self._isolate(plan, items)
        try:
            self.sink.commit([], entries, completes)
        except Exception as error:  # noqa: BLE001
            raise self._fatal(error) from None

    def _isolate(self, plan: StreamPlan, items: list[WriteItem]) -> None:
        if not items:
            return
        try:
            self.sink.commit([(plan, items)], [], ())
            return
        except Exception as error:  # noqa: BLE001
            if is_store_failure(error):
                raise self._fatal(error) from None
            if len(items) > 1:
                half = len(items) // 2
                self._isolate(plan, items[:half])
                self._isolate(plan, items[half:])
                return
            refused = error
        try:
            self.sink.commit([(plan, [stand_in(plan, items[0], refused)])], [], ())
        except Exception as error:  # noqa: BLE001 - even the error row is refused: the store is at fault
            raise self._fatal(error) from None
        self.counters.refused += 1
        logger.warning(
            f"Record {items[0].seq + 1} of stream {plan.label!r} could not be stored as it is "
            f"({type(refused).__name__}); it is stored as an error row with its fields named in _airbyte_meta."
        )

    def _fatal(self, error: BaseException) -> Exception:
        if getattr(error, "failure_type", None) is not None:  # already an Airbyte error with its own words
            return error
        if is_store_failure(error):
            return store_error(self.sink.location, error)
        return system_error(
            f"The output at {self.sink.location} refused a commit ({first_line(error)}).",
            internal_message=first_line(error),
        )
