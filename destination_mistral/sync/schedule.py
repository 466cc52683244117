"""When to commit: as soon as a STATE can be released, or once enough rows, bytes or paid answers
wait, or on a clock; and the wake-ups the loop's tasks give each other about it."""

from __future__ import annotations

import asyncio
import time

from destination_mistral.sync.answers import FreshAnswers
from destination_mistral.sync.reader import ByteWindow
from destination_mistral.sync.states import States
from destination_mistral.sync.streams import Ordering

# Rows committed together at most, when no STATE asks earlier: big enough to amortise a transaction,
# small enough that a crash re-sends little.
COMMIT_ROWS = 2000
# A partial prefix is committed at least this often, so that a slow sync still shows data.
COMMIT_INTERVAL_SECONDS = 5.0
# Answers paid for but not yet in the cache table are committed once this many have arrived (or a
# second after the first of them), whether or not the records they belong to can be committed yet:
# a crash then re-pays at most this many.
FRESH_ANSWERS_TO_COMMIT = 256
FRESH_ANSWERS_INTERVAL_SECONDS = 1.0


class CommitSchedule:
    def __init__(self, ordering: Ordering, states: States, window: ByteWindow, fresh: FreshAnswers) -> None:
        self._ordering = ordering
        self._states = states
        self._window = window
        self._fresh = fresh
        self._due = asyncio.Event()  # a commit is wanted now
        self._progress = asyncio.Event()  # a record was completed, or the sync failed
        self._last_commit = time.monotonic()
        self._stopping = False

    def after_completion(self) -> None:
        """Called whenever records are completed or a barrier is added: wakes the commit loop if a
        commit is due."""
        rows = self._ordering.advance()
        self._progress.set()
        first = self._states.first_position()
        if (
            (first is not None and self._ordering.lowest_uncommitted(once_ready_committed=True) >= first)
            or rows >= COMMIT_ROWS
            or (rows and (self._window.pressure >= 0.75 or self._window.reading_waits))
            or len(self._fresh) >= FRESH_ANSWERS_TO_COMMIT
        ):
            self._due.set()

    def request(self) -> None:
        self._due.set()

    def wake_all(self) -> None:
        """The sync failed: every task that waits must look at it."""
        self._due.set()
        self._progress.set()

    def committed(self) -> None:
        self._last_commit = time.monotonic()

    def stop(self) -> None:
        # The commit loop is stopped by a flag, not cancel(): on Python 3.11, cancelling a task
        # inside asyncio.wait_for can be swallowed when the awaited event fires at the same time.
        self._stopping = True
        self._due.set()

    async def next_commit(self) -> bool:
        """Waits until a commit is due; False once the sync stops."""
        while not self._stopping:
            try:
                await asyncio.wait_for(self._due.wait(), timeout=FRESH_ANSWERS_INTERVAL_SECONDS)
            except TimeoutError:
                # Woken by the clock: paid answers not yet in the cache go in now (a kill would
                # lose them); rows alone wait for the longer interval.
                if not self._fresh and time.monotonic() - self._last_commit < COMMIT_INTERVAL_SECONDS:
                    continue
            if self._stopping:
                return False
            self._due.clear()
            return True
        return False

    async def wait_done_below_limit(self) -> None:
        """Waits until every record before the limit (the failed record, or the end of input) is done.
        The limit is re-read on each wake: another fatal error can move it earlier."""
        while True:
            self._ordering.advance()
            if self._ordering.lowest_uncommitted(once_ready_committed=True) >= self._states.limit():
                return
            self._progress.clear()
            self._ordering.flush_enrichers()
            await self._progress.wait()
