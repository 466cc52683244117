"""The write pipeline: stdin messages in, enriched rows committed, STATE out when it is safe.

    reader thread ──(byte window)──▶ dispatcher ──▶ cache lookup ──▶ enrichment tasks (chat | batched embeddings)
                                                                          │
    STATE out ◀── committer (ordered prefix per stream, one DB transaction) ◀┘

Why these shapes:
- The window bounds the *bytes* read but not yet committed, not a record count: records range from
  tens of bytes to megabytes, and an embedding adds 4 KB to each. Reading pauses when it is full.
- Requests complete out of order; rows are committed in input order per stream (the completed prefix),
  so a STATE can be released as soon as everything received before it is committed, and not later.
- Every STATE is a barrier over all streams: the simplest rule that is correct for both per-stream and
  global state.
- The committer, the cache and the sink share one database thread, so DuckDB sees one writer and the
  event loop never blocks on disk.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from destination_mistral.enrich.base import Enricher
from destination_mistral.enrich.results import Result, failed
from destination_mistral.enrich.templates import RecordError
from destination_mistral.protocol.messages import Record, State, StreamStatus
from destination_mistral.sinks.base import Sink, WriteItem
from destination_mistral.sinks.schema import StreamPlan
from destination_mistral.sync.committer import Committer
from destination_mistral.sync.progress import Counters
from mistral_connection.errors import config_error, system_error, transient_error

logger = logging.getLogger("airbyte")

# Rows committed together at most, when no STATE asks earlier: big enough to amortise a transaction,
# small enough that a crash re-sends little.
COMMIT_ROWS = 2000
# A partial prefix is committed at least this often, so that a slow sync still shows data.
COMMIT_INTERVAL_SECONDS = 5.0
# Answers paid for but not yet in the cache table are committed once this many have arrived (or a
# second after the first of them), whether or not the records they belong to can be committed yet: a crash
# then re-pays at most this many.
FRESH_ANSWERS_TO_COMMIT = 256
FRESH_ANSWERS_INTERVAL_SECONDS = 1.0
# After a failure, requests already sent get this long to bring their (paid) answers home to the
# cache before the sync ends.
SETTLE_SECONDS = 15.0
PROGRESS_INTERVAL_SECONDS = 10.0
# What one record costs in memory beyond its JSON size: a Python dict is ~3x its JSON text, and the
# result (an answer, or a 4-byte-per-dimension vector) comes on top.
DICT_OVERHEAD_FACTOR = 3
ITEM_OVERHEAD_BYTES = 600
CHUNK = 1000
FEED_CHUNK = 64


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


class ByteWindow:
    """A counting semaphore over bytes, shared by the reader thread and the event loop."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._cond = threading.Condition()
        self._closed = False

    def try_acquire(self, amount: int) -> bool:
        """Takes the bytes if they fit now (or the window is closed: the caller then stops)."""
        with self._cond:
            if self._closed or (self.used > 0 and self.used + amount > self.capacity):
                return False
            self.used += amount
            return True

    def acquire(self, amount: int) -> bool:
        with self._cond:
            # A single record larger than the window still passes, alone.
            while not self._closed and self.used > 0 and self.used + amount > self.capacity:
                self._cond.wait()
            if self._closed:
                return False
            self.used += amount
            return True

    def release(self, amount: int) -> None:
        with self._cond:
            self.used = max(0, self.used - amount)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def pressure(self) -> float:
        return self.used / self.capacity if self.capacity else 1.0


@dataclass(eq=False)
class PendingItem(WriteItem):
    gseq: int = 0  # position among all records of the sync: STATE barriers are expressed in it
    cost: int = 0
    key: str | None = None
    prepared: Any = None
    done: bool = False


@dataclass
class StreamRuntime:
    plan: StreamPlan
    enricher: Enricher | None  # None: the stream is stored without enrichment
    pending: collections.deque = field(default_factory=collections.deque)
    ready: int = 0  # length of the completed prefix of `pending`
    ready_cost: int = 0
    next_seq: int = 0
    completed: bool = False  # its COMPLETE status has arrived

    def advance(self) -> None:
        pending = self.pending
        while self.ready < len(pending) and pending[self.ready].done:
            self.ready_cost += pending[self.ready].cost
            self.ready += 1


@dataclass
class Barrier:
    """A point in the input that waits for every record before it to be committed: a STATE to
    release, or a stream's COMPLETE status to apply (its staging table swapped in)."""

    position: int  # every record with gseq < position must be committed first
    message: State | None
    records: int  # records received since the previous STATE
    complete: StreamPlan | None = None  # the stream whose COMPLETE this is
    applied: bool = False


class Pipeline:
    def __init__(
        self,
        plans: Iterable[StreamPlan],
        enrichers: Mapping[tuple, Enricher | None],
        sink: Sink,
        client: Any,
        emit: Callable[[dict], None],
        *,
        on_error: str = "record",
        max_buffer_bytes: int = 64 << 20,
        cache_enabled: bool = True,
        request_stats: Any = None,
    ) -> None:
        self.streams = {plan.key: StreamRuntime(plan, enrichers.get(plan.key)) for plan in plans}
        self.sink = sink
        self.committer = Committer(sink)
        self.client = client
        self.emit = emit
        self.on_error = on_error
        self.cache_enabled = cache_enabled
        self.window = ByteWindow(max_buffer_bytes)
        self.counters = Counters()
        self.request_stats = request_stats
        self.db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="destination-mistral-db")
        self._raw_ids = RawIds()
        # Cache lookups stand between a record and its request: they get a thread (and a DuckDB
        # cursor, see sinks/cache.py) of their own rather than waiting for the commit in progress.
        self.lookups = ThreadPoolExecutor(max_workers=1, thread_name_prefix="destination-mistral-lookup")
        self._next_gseq = 0
        self._records_since_state = 0
        self._barriers: collections.deque[Barrier] = collections.deque()
        self._inflight: dict[str, asyncio.Task] = {}
        self._waiters: dict[str, list[tuple[StreamRuntime, PendingItem]]] = {}
        self._fresh: dict[str, tuple[str, Result]] = {}  # results not yet in the cache table
        self._failure: tuple[int, BaseException] | None = None
        self._wake: asyncio.Event | None = None
        self._progress: asyncio.Event | None = None
        self._commit_lock: asyncio.Lock | None = None
        self._last_commit = time.monotonic()
        self._committing_floor: int | None = None  # lowest gseq of a batch the sink is writing
        self._stopping = False
        self.inbox: asyncio.Queue | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    # ---- input side (reader thread) -------------------------------------------------------------

    def cost_of(self, stream_key: tuple, data: Mapping[str, Any]) -> int:
        size = len(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)) * DICT_OVERHEAD_FACTOR + ITEM_OVERHEAD_BYTES
        runtime = self.streams.get(stream_key)
        if runtime is not None and runtime.plan.enrichment == "embeddings":
            size += 4 * (runtime.plan.embedding_dim or 1024) + 200
        elif runtime is not None and runtime.plan.enrichment == "chat":
            size += 2048
        return size

    def feed(self, messages: Iterable[Record | State]) -> None:
        """Runs in the reader thread: hands messages to the loop, pausing while the window is full."""
        put = self.inbox.put_nowait
        call = self.loop.call_soon_threadsafe
        window = self.window
        # Messages travel to the loop in chunks: one wake-up of the loop per message costs a
        # syscall and a loop iteration each, a visible share of the CPU at thousands of records/s.
        # While the loop is idle (nothing handed over is still unread), each message goes at once,
        # so a slow source's records are not held back waiting for a chunk to fill.
        chunk: list[tuple] = []
        # Chunks handed over / queued by the loop: each counter has one writer, so no lock is needed.
        handed = [0]
        queued = [0]

        def put_all(items: list[tuple]) -> None:
            queued[0] += 1
            for item in items:
                put(item)

        def send() -> None:
            nonlocal chunk
            if chunk:
                handed[0] += 1
                call(put_all, chunk)
                chunk = []

        try:
            for message in messages:
                if type(message) is Record:
                    record = message
                    key = (record.namespace or None, record.stream)
                    cost = self.cost_of(key, record.data)
                    if not window.try_acquire(cost):
                        # Records held here count in the window: hand them over before waiting
                        # for the committer to free space, or it would wait for them forever.
                        send()
                        if not window.acquire(cost):
                            break
                    chunk.append(("record", record, cost))
                    if len(chunk) >= FEED_CHUNK or (handed[0] == queued[0] and self.inbox.empty()):
                        send()
                else:
                    chunk.append(("state" if type(message) is State else "complete", message, 0))
                    send()
                if self._failure is not None:
                    break
        except BaseException as error:  # a broken input must end the sync, not hang it
            send()
            call(put, ("error", error, 0))
        finally:
            send()
            call(put, ("eof", None, 0))

    # ---- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        committer = asyncio.create_task(self._committer())
        reporter = asyncio.create_task(self._reporter())
        try:
            await self._dispatch()
            await self._drain()
        finally:
            # The committer is stopped by a flag, not cancel(): on Python 3.11, cancelling a task
            # inside asyncio.wait_for can be swallowed when the awaited event fires at the same time.
            self._stopping = True
            self._wake.set()
            reporter.cancel()
            for task in list(self._inflight.values()):
                task.cancel()
            self.window.close()
            await asyncio.gather(committer, reporter, return_exceptions=True)
            self.lookups.shutdown(wait=True)
            stats = self.request_stats
            logger.info(
                self.counters.summary(
                    stats.requests if stats else 0, stats.retries if stats else 0, stats.throttled if stats else 0
                )
            )

    async def _dispatch(self) -> None:
        inbox = self.inbox
        while self._failure is None:
            chunk = [await inbox.get()]
            while len(chunk) < CHUNK and not inbox.empty():
                chunk.append(inbox.get_nowait())
            items: list[tuple[StreamRuntime, PendingItem]] = []
            for kind, payload, cost in chunk:
                if self._failure is not None:
                    break
                if kind == "record":
                    items.append(self._accept(payload, cost))
                elif kind == "state":
                    await self._start(items)
                    items = []
                    self._add_barrier(payload)
                elif kind == "complete":
                    await self._start(items)
                    items = []
                    self._add_completion(payload)
                elif kind == "error":
                    # Broken input stops the sync where it was read: what came before is committed
                    # and its STATE released, so the platform resumes right there.
                    await self._start(items)
                    self._fail(self._next_gseq, payload)
                    return
                else:  # eof
                    await self._start(items)
                    return
            # Partial embedding batches are not flushed here, nor at a STATE: the batcher's short
            # linger fills them when input is fast, and bounds the wait when it is slow.
            await self._start(items)

    def _accept(self, record, cost: int) -> tuple[StreamRuntime, PendingItem]:
        key = (record.namespace or None, record.stream)
        runtime = self.streams.get(key)
        if runtime is None:
            raise system_error(
                f"A record arrived for stream {record.stream!r}, which is not in the configured catalog.",
                "record for a stream missing from the catalog",
            )
        if runtime.completed:
            raise config_error(
                f"A record of stream {runtime.plan.label!r} arrived after the stream's COMPLETE status: a "
                "source must send a stream's status last."
            )
        item = PendingItem(
            seq=runtime.next_seq,
            record=record.data,
            emitted_at=record.emitted_at or int(time.time() * 1000),
            raw_id=self._raw_ids.next(),
            result=None,
            changes=record.changes,
            gseq=self._next_gseq,
            cost=cost,
        )
        runtime.next_seq += 1
        self._next_gseq += 1
        self._records_since_state += 1
        self.counters.records_in += 1
        runtime.pending.append(item)
        if runtime.enricher is None:
            item.done = True
            return runtime, item
        try:
            item.prepared = runtime.enricher.prepare(record.data)
            item.key = item.prepared.key
        except RecordError as error:
            self._complete(runtime, item, failed(str(error), kind="input"))
        return runtime, item

    async def _start(self, items: list[tuple[StreamRuntime, PendingItem]]) -> None:
        """Answers what the cache knows, and starts one request (or batch slot) per distinct new input."""
        todo = [(rt, it) for rt, it in items if not it.done]
        if not todo:
            self._after_completion()
            return
        # Answers of this sync not yet committed, taken before the lookup: a commit that ends while
        # the lookup runs takes them out of `_fresh`, and the lookup (which reads what was committed
        # when it started) may not see them either.
        fresh = {it.key: self._fresh[it.key][1] for _, it in todo if it.key in self._fresh}
        unknown = [it.key for _, it in todo if it.key not in fresh and it.key not in self._inflight]
        found: dict[str, Result] = {}
        if unknown and self.cache_enabled:
            found = await self.loop.run_in_executor(self.lookups, self.sink.lookup, unknown)
        await self._count_tokens(todo, fresh, found)
        for runtime, item in todo:
            key = item.key
            if key in fresh:
                self._complete(runtime, item, fresh[key].as_cached())
            elif key in self._fresh:
                self._complete(runtime, item, self._fresh[key][1].as_cached())
            elif key in found:
                self._complete(runtime, item, found[key])
            elif key in self._inflight:
                self._waiters[key].append((runtime, item))
            else:
                self._waiters[key] = [(runtime, item)]
                # A batching enricher hands out a future per input; a task per record would cost
                # more than the rest of the record's handling on the loop.
                task = runtime.enricher.submit(item.prepared)
                self._inflight[key] = task
                task.add_done_callback(lambda t, k=key, e=runtime.enricher: self._on_answer(k, e, t))
        self._after_completion()

    async def _count_tokens(self, todo, fresh: Mapping[str, Any], found: Mapping[str, Any]) -> None:
        """Token counts for the inputs about to be sent, taken on the lookup thread in one call per
        enricher (the tokenizer does not hold the GIL for a list of texts)."""
        by_enricher: dict[int, tuple[Enricher, list]] = {}
        for runtime, item in todo:
            key = item.key
            if key in fresh or key in found or key in self._inflight or key in self._fresh:
                continue
            by_enricher.setdefault(id(runtime.enricher), (runtime.enricher, []))[1].append(item.prepared)
        for enricher, prepared in by_enricher.values():
            await self.loop.run_in_executor(self.lookups, enricher.count_tokens, prepared)

    def _flush_batchers(self) -> None:
        for runtime in self.streams.values():
            if runtime.enricher is not None:
                runtime.enricher.flush()

    def _on_answer(self, key: str, enricher: Enricher, task: asyncio.Future) -> None:
        self._inflight.pop(key, None)
        waiters = self._waiters.pop(key, [])
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            # Fatal for the whole sync (bad key, unknown model, API down): stop at the first record
            # that hit it, after committing what came before.
            self._fail(min(it.gseq for _, it in waiters) if waiters else self._next_gseq, error)
            return
        result: Result = task.result()
        if (result.ok or result.paid) and self.cache_enabled:  # a paid answer is kept even when unusable
            self._fresh[key] = (enricher.kind if enricher.kind == "embeddings" else "chat/completions", result)
        if result.ok:
            self.counters.enriched += 1
        for index, (runtime, item) in enumerate(waiters):
            self._complete(runtime, item, result if index == 0 else result.as_cached())
        self._after_completion()

    def _complete(self, runtime: StreamRuntime, item: PendingItem, result: Result) -> None:
        item.result = result
        item.done = True
        if result.ok:
            if result.cached:
                self.counters.cached += 1
            else:
                self.counters.prompt_tokens += result.prompt_tokens or 0
                self.counters.completion_tokens += result.completion_tokens or 0
        else:
            self.counters.failed += 1
            if self.on_error == "fail":
                label = runtime.plan.label
                text = (
                    f"Record {item.seq + 1} of stream {label!r} could not be enriched: {result.error}. "
                    "`on_error` is `fail`, so the sync stops; the records before it are committed."
                )
                self._fail(item.gseq, config_error(text) if result.error_kind == "input" else transient_error(text))

    def _after_completion(self) -> None:
        total_rows = total_cost = 0
        for runtime in self.streams.values():
            runtime.advance()
            total_rows += runtime.ready
            total_cost += runtime.ready_cost
        self._progress.set()
        if (
            (self._barriers and self._lowest_uncommitted_if_ready() >= self._barriers[0].position)
            or total_rows >= COMMIT_ROWS
            or (total_rows and self.window.pressure >= 0.75)
            or len(self._fresh) >= FRESH_ANSWERS_TO_COMMIT
        ):
            self._wake.set()

    def _lowest_uncommitted_if_ready(self) -> int:
        """The lowest gseq not yet done (what would remain uncommitted after a full commit)."""
        lowest = self._next_gseq
        for runtime in self.streams.values():
            if runtime.ready < len(runtime.pending):
                lowest = min(lowest, runtime.pending[runtime.ready].gseq)
        return lowest

    def _lowest_uncommitted(self) -> int:
        lowest = self._next_gseq if self._committing_floor is None else min(self._next_gseq, self._committing_floor)
        for runtime in self.streams.values():
            if runtime.pending:
                lowest = min(lowest, runtime.pending[0].gseq)
        return lowest

    def _add_barrier(self, message: State) -> None:
        self.counters.states_in += 1
        self._barriers.append(Barrier(self._next_gseq, message, self._records_since_state))
        self._records_since_state = 0
        self._after_completion()
        self._release_states()

    def _add_completion(self, status: StreamStatus) -> None:
        runtime = self.streams[status.key]
        if runtime.completed:
            return  # a repeated COMPLETE changes nothing: the stream is already complete
        runtime.completed = True
        self._barriers.append(Barrier(self._next_gseq, None, 0, complete=runtime.plan))
        self._after_completion()

    def _fail(self, gseq: int, error: BaseException) -> None:
        if self._failure is None or gseq < self._failure[0]:
            self._failure = (gseq, error)
        self.window.close()
        if self.inbox is not None:
            self.inbox.put_nowait(("eof", None, 0))  # wake the dispatcher if it waits for input
        self._wake.set()
        self._progress.set()

    # ---- committing ------------------------------------------------------------------------------

    async def _committer(self) -> None:
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=FRESH_ANSWERS_INTERVAL_SECONDS)
            except TimeoutError:
                # Woken by the clock: paid answers not yet in the cache go in now (a kill would
                # lose them); rows alone wait for the longer interval.
                if not self._fresh and time.monotonic() - self._last_commit < COMMIT_INTERVAL_SECONDS:
                    continue
            if self._stopping:
                return
            self._wake.clear()
            try:
                await self._commit()
            except BaseException as error:
                if isinstance(error, asyncio.CancelledError):
                    raise
                self._fail(-1, error)
                return

    async def _commit(self, limit: int | None = None) -> None:
        async with self._commit_lock:
            if limit is None and self._failure is not None:
                limit = self._failure[0]
            if limit is not None and limit < 0:
                return  # the store has failed: nothing more is written, and no STATE leaves
            batches: list[tuple[StreamPlan, list[PendingItem]]] = []
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
            entries = [(key, endpoint, result) for key, (endpoint, result) in self._fresh.items()]
            # Streams whose COMPLETE has come and whose records are all in this commit or before.
            after = self._lowest_uncommitted()
            completes = [b for b in self._barriers if b.complete is not None and not b.applied and b.position <= after]
            if not batches and not entries and not completes:
                self._release_states()
                return
            # The items have left `pending` but are not durable until the sink returns: while it
            # works, a STATE arriving at the loop must not be released past them. On failure the
            # floor stays, so nothing after the lost batch is ever released.
            if batches:
                self._committing_floor = min(items[0].gseq for _, items in batches)
            try:
                await self.loop.run_in_executor(
                    self.db, self.committer.commit, batches, entries, [b.complete for b in completes]
                )
            except BaseException as error:
                # Whoever called this commit, the store has failed: no later commit may run and no
                # STATE may leave (the floor stays where the lost batch began).
                if not isinstance(error, asyncio.CancelledError):
                    self._fail(-1, error)
                raise
            self._committing_floor = None
            for barrier in completes:
                barrier.applied = True
            for key, _, _ in entries:
                self._fresh.pop(key, None)
            self.window.release(cost)
            self.counters.committed += sum(len(items) for _, items in batches)
            self._last_commit = time.monotonic()
            self._release_states()

    def _release_states(self) -> None:
        if self._failure is not None and self._failure[0] < 0:
            return  # the store failed: what it holds is uncertain, so no STATE leaves
        lowest = self._lowest_uncommitted()
        while self._barriers and self._barriers[0].position <= lowest:
            barrier = self._barriers[0]
            if barrier.complete is not None and not barrier.applied:
                # A STATE after a COMPLETE waits for the swap, which the next commit makes.
                self._wake.set()
                return
            self._barriers.popleft()
            if barrier.message is not None:
                self.counters.states_out += 1
                self.emit(barrier.message.with_record_count(barrier.records))

    def _limit(self) -> int:
        return self._failure[0] if self._failure is not None else self._next_gseq

    async def _wait_done_below(self) -> None:
        """Waits until every record before the limit (the failed record, or the end of input) is done.
        The limit is re-read on each wake: another fatal error can move it earlier."""
        while True:
            for runtime in self.streams.values():
                runtime.advance()
            if self._lowest_uncommitted_if_ready() >= self._limit():
                return
            self._progress.clear()
            self._flush_batchers()
            await self._progress.wait()

    async def _drain(self) -> None:
        self._flush_batchers()
        if self._failure is None or self._failure[0] >= 0:
            await self._wait_done_below()
        if self._failure is not None:
            if self._failure[0] >= 0:
                await self._commit(self._failure[0])
                await self._settle()
            raise self._failure[1]
        await self._commit()
        if self._failure is not None:  # the committer's last commit failed while this one waited
            raise self._failure[1]
        if any(runtime.pending for runtime in self.streams.values()):
            raise system_error("Internal error: records left uncommitted at the end of the sync.")
        await self.loop.run_in_executor(self.db, self.sink.finish)
        self._release_states()

    async def _settle(self) -> None:
        """Lets the requests already sent bring their answers home to the cache before a failed sync
        ends (bounded in time): they are paid for, and the next attempt then finds them."""
        inflight = list(self._inflight.values())
        if inflight:
            await asyncio.wait(inflight, timeout=SETTLE_SECONDS)
        if self._fresh and self._failure is not None and self._failure[0] >= 0:
            await self._commit(self._failure[0])

    async def _reporter(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_SECONDS)
            stats = self.request_stats
            logger.info(
                self.counters.line(
                    stats.requests if stats else 0, stats.retries if stats else 0, stats.throttled if stats else 0
                )
            )
