"""The order a sync keeps: each stream's records in input order, and how much of each is complete.

Requests complete out of order; rows are committed in input order per stream, so what may be
committed is each stream's completed prefix. Every record also has a position among all records of
the sync (`gseq`): the STATE barriers (sync/states.py) are expressed in it."""

from __future__ import annotations

import collections
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from destination_mistral.enrich.base import Enricher, Input
from destination_mistral.protocol.messages import Record
from destination_mistral.sinks.base import WriteItem
from destination_mistral.sinks.schema import StreamPlan

StreamKey = tuple[str | None, str]


class RawIds:
    """uuid4 strings for `_airbyte_raw_id`, drawn a thousand at a time: `uuid.uuid4()` makes a
    getrandom system call per record."""

    def __init__(self) -> None:
        self._pool: list[str] = []

    def next(self) -> str:
        if not self._pool:
            raw = os.urandom(16 * 1024)
            self._pool = [str(uuid.UUID(bytes=raw[i : i + 16], version=4)) for i in range(0, len(raw), 16)]
        return self._pool.pop()


@dataclass(eq=False)
class PendingItem(WriteItem):
    gseq: int = 0  # position among all records of the sync: STATE barriers are expressed in it
    cost: int = 0  # bytes it holds in the reader's window until it is committed
    key: str | None = None  # its input's cache key; None when the stream is not enriched
    prepared: Input | None = None
    done: bool = False


@dataclass
class StreamRuntime:
    plan: StreamPlan
    enricher: Enricher[Input] | None  # None: the stream is stored without enrichment
    pending: collections.deque[PendingItem] = field(default_factory=collections.deque)
    ready: int = 0  # length of the completed prefix of `pending`
    ready_cost: int = 0
    next_seq: int = 0
    completed: bool = False  # its COMPLETE status has arrived
    uncounted: int = 0  # records received since a STATE last reported the stream's records

    def advance(self) -> None:
        pending = self.pending
        while self.ready < len(pending) and pending[self.ready].done:
            self.ready_cost += pending[self.ready].cost
            self.ready += 1


Batch = tuple[StreamPlan, list[PendingItem]]


class Ordering:
    """Every stream's records from their arrival until they are handed to the store."""

    def __init__(self, plans: Iterable[StreamPlan], enrichers: Mapping[StreamKey, Enricher[Input] | None]) -> None:
        self.streams = {plan.key: StreamRuntime(plan, enrichers.get(plan.key)) for plan in plans}
        self.next_gseq = 0  # the position the next record will take
        self._raw_ids = RawIds()

    def append(self, runtime: StreamRuntime, record: Record, cost: int) -> PendingItem:
        item = PendingItem(
            seq=runtime.next_seq,
            record=record.data,
            emitted_at=record.emitted_at or int(time.time() * 1000),
            raw_id=self._raw_ids.next(),
            result=None,
            changes=record.changes,
            gseq=self.next_gseq,
            cost=cost,
        )
        runtime.next_seq += 1
        runtime.uncounted += 1
        self.next_gseq += 1
        runtime.pending.append(item)
        return item

    def advance(self) -> int:
        """Extends each stream's completed prefix; returns how many rows the prefixes hold."""
        rows = 0
        for runtime in self.streams.values():
            runtime.advance()
            rows += runtime.ready
        return rows

    def lowest_uncommitted(self, *, once_ready_committed: bool = False) -> int:
        """The lowest position still waiting in a stream (or the next one, when none waits). With
        `once_ready_committed`, the lowest that a commit of every completed prefix would leave: the
        lowest record not yet done."""
        lowest = self.next_gseq
        for runtime in self.streams.values():
            first = runtime.ready if once_ready_committed else 0
            if first < len(runtime.pending):
                lowest = min(lowest, runtime.pending[first].gseq)
        return lowest

    def take(self, limit: int | None) -> tuple[list[Batch], int]:
        """Removes each stream's completed prefix (only the records before `limit`, when given) and
        returns it with the bytes it held in the window."""
        batches: list[Batch] = []
        cost = 0
        for runtime in self.streams.values():
            runtime.advance()
            count = runtime.ready
            if limit is not None:
                count = 0
                while count < runtime.ready and runtime.pending[count].gseq < limit:
                    count += 1
            if not count:
                continue
            items = [runtime.pending.popleft() for _ in range(count)]
            runtime.ready -= count
            moved = sum(i.cost for i in items)
            runtime.ready_cost -= moved
            cost += moved
            batches.append((runtime.plan, items))
        return batches, cost

    def has_pending(self) -> bool:
        return any(runtime.pending for runtime in self.streams.values())

    def flush_enrichers(self) -> None:
        for runtime in self.streams.values():
            if runtime.enricher is not None:
                runtime.enricher.flush()
