"""The STATE invariant, held in this one module: a STATE is released only after every record before
it is stored, and never once the store has failed. A stream's COMPLETE status is a barrier of the
same kind: its staging table is swapped in once every record before it is stored, and a STATE after
it waits for the swap. The first failure of the sync is kept here too, since it decides both.

Every STATE is a barrier over all streams: the simplest rule that is correct for both per-stream and
global state."""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass

from airbyte_protocol_dataclasses.models import AirbyteStateType

from destination_mistral.protocol.messages import State
from destination_mistral.sinks.schema import StreamPlan
from destination_mistral.sync.progress import Counters
from destination_mistral.sync.streams import Ordering, StreamRuntime

# The position of a failure of the store itself: below every record, so nothing more is committed.
STORE_FAILED = -1


@dataclass
class Barrier:
    """A point in the input that waits for every record before it to be committed: a STATE to
    release, or a stream's COMPLETE status to apply (its staging table swapped in)."""

    position: int  # every record with gseq < position must be committed first
    message: State | None
    records: int  # the records it reports (destinationStats.recordCount): see States.add_state
    complete: StreamPlan | None = None  # the stream whose COMPLETE this is
    applied: bool = False


@dataclass(frozen=True)
class Failure:
    position: int  # the first record not to commit; STORE_FAILED when the store failed
    error: BaseException


class States:
    """The barriers not yet released, the batch the store is writing, and the sync's failure."""

    def __init__(self, ordering: Ordering, emit: Callable[[dict], None], counters: Counters) -> None:
        self._ordering = ordering
        self._emit = emit
        self._counters = counters
        self._barriers: collections.deque[Barrier] = collections.deque()
        self._writing: int | None = None  # lowest gseq of a batch the store is writing
        self.failure: Failure | None = None

    def add_state(self, message: State) -> None:
        self._counters.states_in += 1
        position = self._ordering.next_gseq
        self._barriers.append(Barrier(position, message, self._records_covered(message)))

    def _records_covered(self, message: State) -> int:
        """The records a STATE reports, as Airbyte's destinations count them: a stream's STATE, that
        stream's records since it was last covered; a GLOBAL (or LEGACY) one, every stream's. Each
        record is reported once."""
        streams = list(self._ordering.streams.values())
        stream = message.parsed.stream
        if message.parsed.type is AirbyteStateType.STREAM and stream is not None:
            key = (stream.stream_descriptor.namespace or None, stream.stream_descriptor.name)
            streams = [self._ordering.streams[key]] if key in self._ordering.streams else []
        records = sum(runtime.uncounted for runtime in streams)
        for runtime in streams:
            runtime.uncounted = 0
        return records

    def add_completion(self, runtime: StreamRuntime) -> bool:
        """Adds the stream's COMPLETE barrier; False when it is repeated (the stream is already
        complete, and it changes nothing)."""
        if runtime.completed:
            return False
        runtime.completed = True
        self._barriers.append(Barrier(self._ordering.next_gseq, None, 0, complete=runtime.plan))
        return True

    def fail(self, position: int, error: BaseException) -> None:
        """Keeps the failure of the earliest record: what comes before it is still committed."""
        if self.failure is None or position < self.failure.position:
            self.failure = Failure(position, error)

    @property
    def store_failed(self) -> bool:
        return self.failure is not None and self.failure.position < 0

    def limit(self) -> int:
        """The position the sync commits up to: the failed record, or the end of input so far."""
        return self.failure.position if self.failure is not None else self._ordering.next_gseq

    def first_position(self) -> int | None:
        return self._barriers[0].position if self._barriers else None

    def writing(self, floor: int | None) -> None:
        """The records from `floor` on have left their streams but are not durable until the store
        returns: no STATE may pass them meanwhile. A commit that fails leaves the floor in place,
        so nothing after the lost batch is ever released."""
        self._writing = floor

    def lowest_uncommitted(self) -> int:
        lowest = self._ordering.lowest_uncommitted()
        return lowest if self._writing is None else min(lowest, self._writing)

    def completions_due(self) -> list[Barrier]:
        """COMPLETE barriers whose stream has every record in the commit about to be made, or before."""
        after = self.lowest_uncommitted()
        return [b for b in self._barriers if b.complete is not None and not b.applied and b.position <= after]

    def applied(self, completes: list[Barrier]) -> None:
        """The commit that swapped these streams' tables in has returned."""
        for barrier in completes:
            barrier.applied = True

    def release(self) -> bool:
        """Emits every STATE whose records are all stored. True when a STATE waits for a stream's
        swap, which only a commit makes."""
        if self.store_failed:
            return False  # the store failed: what it holds is uncertain, so no STATE leaves
        lowest = self.lowest_uncommitted()
        while self._barriers and self._barriers[0].position <= lowest:
            barrier = self._barriers[0]
            if barrier.complete is not None and not barrier.applied:
                return True
            self._barriers.popleft()
            if barrier.message is not None:
                self._counters.states_out += 1
                self._emit(barrier.message.with_record_count(barrier.records))
        return False
