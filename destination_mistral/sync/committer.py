"""The committer: it stores each stream's completed prefix with the answers paid for (one
transaction per commit, on the database thread), applies the COMPLETE statuses the commit covers,
and releases the STATEs that are then safe, by the rule held in sync/states.py. A failure of the
sync goes through it too, since it decides what may still be committed and released.

The committer, the cache and the sink share one database thread, so DuckDB sees one writer and the
event loop never blocks on disk."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from destination_mistral.protocol.messages import State, StreamStatus
from destination_mistral.sync.answers import FreshAnswers
from destination_mistral.sync.progress import Counters
from destination_mistral.sync.reader import END_OF_INPUT, ByteWindow, Inbound
from destination_mistral.sync.schedule import CommitSchedule
from destination_mistral.sync.states import STORE_FAILED, States
from destination_mistral.sync.store import StoreWriter
from destination_mistral.sync.streams import Ordering


class Committer:
    def __init__(
        self,
        ordering: Ordering,
        states: States,
        schedule: CommitSchedule,
        store: StoreWriter,
        fresh: FreshAnswers,
        window: ByteWindow,
        inbox: asyncio.Queue[Inbound],
        counters: Counters,
        db: ThreadPoolExecutor,
    ) -> None:
        self._ordering = ordering
        self._states = states
        self._schedule = schedule
        self._store = store
        self._fresh = fresh
        self._window = window
        self._inbox = inbox
        self._counters = counters
        self._db = db
        self._lock = asyncio.Lock()

    @property
    def stopped(self) -> bool:
        return self._states.failure is not None

    def add_state(self, message: State) -> None:
        self._states.add_state(message)
        self._schedule.after_completion()
        self.release_states()

    def add_completion(self, status: StreamStatus) -> None:
        if self._states.add_completion(self._ordering.streams[status.key]):
            self._schedule.after_completion()

    def fail(self, position: int, error: BaseException) -> None:
        """Stops the sync at `position` (STORE_FAILED: the store failed); what comes before a
        failed record is still committed, and its STATEs released."""
        self._states.fail(position, error)
        self._window.close()
        self._inbox.put_nowait(END_OF_INPUT)  # wake the dispatcher if it waits for input
        self._schedule.wake_all()

    def release_states(self) -> None:
        if self._states.release():
            self._schedule.request()  # a STATE after a COMPLETE waits for the swap: the next commit makes it

    async def commit(self, limit: int | None = None) -> None:
        """Stores every completed prefix (only the records before `limit`, when given)."""
        async with self._lock:
            failure = self._states.failure
            if limit is None and failure is not None:
                limit = failure.position
            if limit is not None and limit < 0:
                return  # the store has failed: nothing more is written, and no STATE leaves
            batches, cost = self._ordering.take(limit)
            entries = self._fresh.entries()
            completes = self._states.completions_due()
            if not batches and not entries and not completes:
                self.release_states()
                return
            if batches:
                self._states.writing(min(items[0].gseq for _, items in batches))
            try:
                await asyncio.get_running_loop().run_in_executor(
                    self._db, self._store.commit, batches, entries, [b.complete for b in completes]
                )
            except BaseException as error:
                # Whoever called this commit, the store has failed: no later commit may run and no
                # STATE may leave (the floor stays where the lost batch began).
                if not isinstance(error, asyncio.CancelledError):
                    self.fail(STORE_FAILED, error)
                raise
            self._states.writing(None)
            self._states.applied(completes)
            self._fresh.stored(entries)
            self._window.release(cost)
            self._counters.committed += sum(len(items) for _, items in batches)
            self._schedule.committed()
            self.release_states()
