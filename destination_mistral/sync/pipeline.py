"""The write pipeline: stdin messages in, enriched rows committed, STATE out when it is safe. This
module builds one sync's parts and runs their tasks to the end of the sync:

    reader thread ──(byte window)──▶ dispatcher ──▶ cache lookup ──▶ enrichment tasks (chat | batched embeddings)
                                                                          │
    STATE out ◀── committer (ordered prefix per stream, one DB transaction) ◀┘

- reader.py: the reader thread, the typed messages it hands over, the byte window;
- dispatcher.py: records to their results (fresh answers, the cache, requests shared per input);
- streams.py: each stream's records in input order and its completed prefix;
- schedule.py: when to commit;
- committer.py: the commits, and the STATEs they release by the rule in states.py;
- store.py: one commit into the sink, and what its failure means."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from destination_mistral.enrich.base import Enricher, Input
from destination_mistral.protocol.messages import Record, State, StreamStatus
from destination_mistral.sinks.base import Sink
from destination_mistral.sinks.schema import StreamPlan
from destination_mistral.sync.answers import FreshAnswers, InFlight
from destination_mistral.sync.committer import Committer
from destination_mistral.sync.dispatcher import Dispatcher
from destination_mistral.sync.progress import Counters
from destination_mistral.sync.reader import ByteWindow, Inbound, Reader
from destination_mistral.sync.schedule import CommitSchedule
from destination_mistral.sync.states import STORE_FAILED, States
from destination_mistral.sync.store import StoreWriter
from destination_mistral.sync.streams import Ordering, StreamKey
from mistral_connection.errors import system_error

if TYPE_CHECKING:  # the runner imports the client before the pipeline; only its type is needed here
    from destination_mistral.http.client import MistralClient

logger = logging.getLogger("airbyte")

# After a failure, requests already sent get this long to bring their (paid) answers home to the
# cache before the sync ends.
SETTLE_SECONDS = 15.0
PROGRESS_INTERVAL_SECONDS = 10.0


class Pipeline:
    """One sync, built on the running event loop: `feed` runs in the reader thread, `run` on the loop."""

    def __init__(
        self,
        plans: Iterable[StreamPlan],
        enrichers: Mapping[StreamKey, Enricher[Input] | None],
        sink: Sink,
        client: MistralClient | None,  # whose request counts the progress lines show
        emit: Callable[[dict], None],
        *,
        on_error: str = "record",
        max_buffer_bytes: int = 64 << 20,
        cache_enabled: bool = True,
    ) -> None:
        self.counters = Counters()
        self.window = ByteWindow(max_buffer_bytes)
        self.inbox: asyncio.Queue[Inbound] = asyncio.Queue()
        self.db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="destination-mistral-db")
        # Cache lookups stand between a record and its request: they get a thread (and a DuckDB
        # cursor, see sinks/cache.py) of their own rather than waiting for the commit in progress.
        self._lookups = ThreadPoolExecutor(max_workers=1, thread_name_prefix="destination-mistral-lookup")
        self._sink = sink
        self._client = client
        self._ordering = ordering = Ordering(plans, enrichers)
        self._states = states = States(ordering, emit, self.counters)
        self._fresh = fresh = FreshAnswers()
        self._in_flight = InFlight()
        self._schedule = CommitSchedule(ordering, states, self.window, fresh)
        # Reading that waits for room gets what is complete committed now, not at the next timed commit.
        loop = asyncio.get_running_loop()
        self.window.on_wait = lambda: loop.call_soon_threadsafe(self._schedule.after_completion)
        self._committer = committer = Committer(
            ordering,
            states,
            self._schedule,
            StoreWriter(sink, self.counters),
            fresh,
            self.window,
            self.inbox,
            self.counters,
            self.db,
        )
        self._dispatcher = Dispatcher(
            ordering,
            self.inbox,
            committer,
            self._schedule,
            fresh,
            self._in_flight,
            sink,
            self._lookups,
            self.counters,
            on_error=on_error,
            cache_enabled=cache_enabled,
        )
        plans_by_key = {key: runtime.plan for key, runtime in ordering.streams.items()}
        self._reader = Reader(
            plans_by_key, self.window, self.inbox, asyncio.get_running_loop(), failed=lambda: committer.stopped
        )

    def feed(self, messages: Iterable[Record | State | StreamStatus]) -> None:
        """Runs in the reader thread: hands messages to the loop, pausing while the window is full."""
        self._reader.feed(messages)

    async def run(self) -> None:
        commits = asyncio.create_task(self._commit_loop())
        reporter = asyncio.create_task(self._reporter())
        try:
            await self._dispatcher.run()
            await self._drain()
        finally:
            self._schedule.stop()
            reporter.cancel()
            for request in self._in_flight.requests():
                request.cancel()
            self.window.close()
            await asyncio.gather(commits, reporter, return_exceptions=True)
            self._lookups.shutdown(wait=True)
            logger.info(self.counters.summary(*self._request_counts()))
            if self.counters.cut:
                logger.warning(
                    f"{self.counters.cut} record(s) had an input longer than the model's limit and were enriched "
                    "from its start only (`input_too_long: truncate`); their `_airbyte_meta.changes` say TRUNCATED. "
                    "Set `input_too_long` to `error` to get error rows instead."
                )

    async def _commit_loop(self) -> None:
        while await self._schedule.next_commit():
            try:
                await self._committer.commit()
            except BaseException as error:
                if isinstance(error, asyncio.CancelledError):
                    raise
                self._committer.fail(STORE_FAILED, error)
                return

    async def _drain(self) -> None:
        states = self._states
        self._ordering.flush_enrichers()
        if not states.store_failed:
            await self._schedule.wait_done_below_limit()
        if states.failure is not None:
            if states.failure.position >= 0:
                await self._committer.commit(states.failure.position)
                await self._settle()
            raise states.failure.error
        await self._committer.commit()
        if states.failure is not None:  # the commit loop's last commit failed while this one waited
            raise states.failure.error
        if self._ordering.has_pending():
            raise system_error("Internal error: records left uncommitted at the end of the sync.")
        await asyncio.get_running_loop().run_in_executor(self.db, self._sink.finish)
        self._committer.release_states()

    async def _settle(self) -> None:
        """Lets the requests already sent bring their answers home to the cache before a failed sync
        ends (bounded in time): they are paid for, and the next attempt then finds them."""
        in_flight = self._in_flight.requests()
        if in_flight:
            await asyncio.wait(in_flight, timeout=SETTLE_SECONDS)
        failure = self._states.failure
        if self._fresh and failure is not None and failure.position >= 0:
            await self._committer.commit(failure.position)

    async def _reporter(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_SECONDS)
            logger.info(self.counters.line(*self._request_counts()))

    def _request_counts(self) -> tuple[int, int, int]:
        if self._client is None:
            return 0, 0, 0
        stats = self._client.stats
        return stats.requests, stats.retries, stats.throttled
