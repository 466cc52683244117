"""The dispatcher: reads the inbox on the event loop, accepts each record into its stream, and gets
each record's result: from this sync's fresh answers, from the cache, by joining a request already
in flight for the same input, or by starting one (or a batch slot). STATE and COMPLETE messages go
to the committer, which releases or applies them once the records before them are stored."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from destination_mistral.enrich.base import Enricher, Input
from destination_mistral.enrich.results import Result, failed
from destination_mistral.enrich.templates import RecordError
from destination_mistral.protocol.messages import State, StreamStatus
from destination_mistral.sinks.base import Sink
from destination_mistral.sinks.schema import StreamPlan
from destination_mistral.sync.answers import FreshAnswers, InFlight, Waiter
from destination_mistral.sync.committer import Committer
from destination_mistral.sync.progress import Counters
from destination_mistral.sync.reader import Inbound, InputFailed, RecordIn
from destination_mistral.sync.schedule import CommitSchedule
from destination_mistral.sync.streams import Ordering, PendingItem, StreamRuntime
from mistral_connection.errors import config_error, system_error, transient_error

CHUNK = 1000  # messages taken from the inbox at once


# The cache's name for an enricher's answers (its `endpoint` column): chat's keeps the name earlier
# versions stored; the cache reads a vector back for "embeddings" only.
_CACHE_NAMES = {"chat": "chat/completions"}


class Dispatcher:
    def __init__(
        self,
        ordering: Ordering,
        inbox: asyncio.Queue[Inbound],
        committer: Committer,
        schedule: CommitSchedule,
        fresh: FreshAnswers,
        in_flight: InFlight,
        sink: Sink,
        lookups: ThreadPoolExecutor,
        counters: Counters,
        *,
        on_error: str,  # "record" or "fail"
        cache_enabled: bool,
    ) -> None:
        self._ordering = ordering
        self._inbox = inbox
        self._committer = committer
        self._schedule = schedule
        self._fresh = fresh
        self._in_flight = in_flight
        self._sink = sink
        self._lookups = lookups
        self._counters = counters
        self._on_error = on_error
        self._cache_enabled = cache_enabled
        if cache_enabled:
            # Chunk answers are kept for the cache as they arrive, before their record is complete.
            for runtime in ordering.streams.values():
                if hasattr(runtime.enricher, "on_chunk_answer"):
                    runtime.enricher.on_chunk_answer = self._on_chunk_answer

    async def run(self) -> None:
        """Dispatches the input until it ends or the sync fails."""
        inbox = self._inbox
        committer = self._committer
        while not committer.stopped:
            chunk = [await inbox.get()]
            while len(chunk) < CHUNK and not inbox.empty():
                chunk.append(inbox.get_nowait())
            items: list[Waiter] = []
            for message in chunk:
                if committer.stopped:
                    break
                match message:
                    case RecordIn():
                        items.append(self._accept(message))
                    case State():
                        await self._start(items)
                        items = []
                        committer.add_state(message)
                    case StreamStatus():
                        await self._start(items)
                        items = []
                        committer.add_completion(message)
                    case InputFailed():
                        # Broken input stops the sync where it was read: what came before is committed
                        # and its STATE released, so the platform resumes right there.
                        await self._start(items)
                        committer.fail(self._ordering.next_gseq, message.error)
                        return
                    case _:  # the end of input
                        await self._start(items)
                        return
            # Partial embedding batches are not flushed here, nor at a STATE: the batcher's short
            # linger fills them when input is fast, and bounds the wait when it is slow.
            await self._start(items)

    def _accept(self, message: RecordIn) -> Waiter:
        record = message.record
        runtime = self._ordering.streams.get((record.namespace or None, record.stream))
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
        item = self._ordering.append(runtime, record, message.cost)
        self._counters.records_in += 1
        if runtime.enricher is None or runtime.plan.deletes(record.data):
            # A CDC delete removes its key's row and is never stored: nothing to pay for.
            item.done = True
            return runtime, item
        started = time.thread_time()  # this thread's CPU only, whatever else runs meanwhile
        try:
            item.prepared = runtime.enricher.prepare(record.data)
            item.key = item.prepared.key
            self._counters.split_cpu += getattr(item.prepared, "split_cpu", 0.0)
            if item.prepared.cut:
                # Never a silent cut: the row says its enrichment saw only the start of its input.
                item.changes = [*(item.changes or []), truncated_change(runtime.plan)]
                self._counters.cut += 1
        except RecordError as error:
            self._complete(runtime, item, failed(str(error), kind="input"))
        finally:
            self._counters.prepare_cpu += time.thread_time() - started
        return runtime, item

    async def _start(self, items: list[Waiter]) -> None:
        """Answers what the cache knows, and starts one request (or batch slot) per distinct new input."""
        todo = [(rt, it) for rt, it in items if not it.done]
        if not todo:
            self._schedule.after_completion()
            return
        fresh_answers, in_flight = self._fresh, self._in_flight
        # Answers of this sync not yet committed, taken before the lookup: a commit that ends while
        # the lookup runs takes them out of `fresh_answers`, and the lookup (which reads what was
        # committed when it started) may not see them either.
        fresh = {it.key: fresh_answers.get(it.key) for _, it in todo if it.key in fresh_answers}
        unknown = [it.key for _, it in todo if it.key not in fresh and it.key not in in_flight]
        found: dict[str, Result] = {}
        if unknown and self._cache_enabled:
            found = await asyncio.get_running_loop().run_in_executor(self._lookups, self._sink.lookup, unknown)
        to_send = [(rt, it) for rt, it in todo if not self._answered(it.key, fresh, found)]
        await self._count_tokens(to_send)
        await self._known_chunks([it for _, it in to_send])
        for runtime, item in todo:
            key = item.key
            if key in fresh:
                self._complete(runtime, item, fresh[key].as_cached())
            elif key in fresh_answers:
                self._complete(runtime, item, fresh_answers.get(key).as_cached())
            elif key in found:
                # An enricher whose cached answers leave out what the input holds puts it back.
                from_cache = getattr(runtime.enricher, "from_cache", None)
                self._complete(runtime, item, from_cache(item.prepared, found[key]) if from_cache else found[key])
            elif key in in_flight:
                in_flight.join(key, (runtime, item))
            else:
                # A batching enricher hands out a future per input; a task per record would cost
                # more than the rest of the record's handling on the loop.
                enricher = runtime.enricher
                request = enricher.submit(item.prepared)
                in_flight.start(key, request, (runtime, item))
                request.add_done_callback(lambda done, k=key, e=enricher: self._on_answer(k, e, done))
        self._schedule.after_completion()

    async def _known_chunks(self, items: list[PendingItem]) -> None:
        """For records about to be sent in chunks: the chunks already answered, in this sync or a
        cached one (a chunk shared with another record, or the part of a record a failed or killed
        sync had received), which are then not sent again."""
        chunked = [item for item in items if hasattr(item.prepared, "known")]
        if not chunked:
            return
        keys = {key for item in chunked for key in item.prepared.chunk_keys}
        known = {key: self._fresh.get(key).as_cached() for key in keys if key in self._fresh}
        unknown = [key for key in keys if key not in known]
        if unknown and self._cache_enabled:
            loop = asyncio.get_running_loop()
            known.update(await loop.run_in_executor(self._lookups, self._sink.lookup, unknown))
            # A chunk answered while the lookup ran (another record's request for it was in flight)
            # is among this sync's answers now, no longer in flight, and not in what the lookup read.
            fresh = self._fresh
            known.update({key: fresh.get(key).as_cached() for key in unknown if key not in known and key in fresh})
        for item in chunked:
            item.prepared.known = {key: known[key] for key in item.prepared.chunk_keys if key in known}

    def _on_chunk_answer(self, key: str, result: Result) -> None:
        self._fresh.add(key, "embeddings", result)

    def _answered(self, key: str, fresh: dict[str, Result], found: dict[str, Result]) -> bool:
        """Whether an input has its answer, or one on the way: it is not sent."""
        return key in fresh or key in found or key in self._in_flight or key in self._fresh

    async def _count_tokens(self, to_send: list[Waiter]) -> None:
        """Token counts for the inputs about to be sent, taken on the lookup thread in one call per
        enricher (the tokenizer does not hold the GIL for a list of texts)."""
        by_enricher: dict[int, tuple[Enricher[Input], list[Input]]] = {}
        for runtime, item in to_send:
            by_enricher.setdefault(id(runtime.enricher), (runtime.enricher, []))[1].append(item.prepared)
        loop = asyncio.get_running_loop()
        for enricher, prepared in by_enricher.values():
            await loop.run_in_executor(self._lookups, enricher.count_tokens, prepared)

    def _on_answer(self, key: str, enricher: Enricher[Input], request: asyncio.Future[Result]) -> None:
        waiters = self._in_flight.finish(key)
        if request.cancelled():
            return
        error = request.exception()
        if error is not None:
            # Fatal for the whole sync (bad key, unknown model, API down): stop at the first record
            # that hit it, after committing what came before.
            self._committer.fail(min(it.gseq for _, it in waiters) if waiters else self._ordering.next_gseq, error)
            return
        result = request.result()
        if (result.ok or result.paid) and self._cache_enabled:  # a paid answer is kept even when unusable
            self._fresh.add(key, _CACHE_NAMES.get(enricher.kind, enricher.kind), result)
        if result.ok and not result.cached:  # a record whose chunks were all known paid nothing
            self._counters.enriched += 1
        for index, (runtime, item) in enumerate(waiters):
            self._complete(runtime, item, result if index == 0 else result.as_cached())
        self._schedule.after_completion()

    def _complete(self, runtime: StreamRuntime, item: PendingItem, result: Result) -> None:
        item.result = result
        item.done = True
        counters = self._counters
        if result.ok:
            if result.cached:
                counters.cached += 1
            else:
                counters.prompt_tokens += result.prompt_tokens or 0
                counters.completion_tokens += result.completion_tokens or 0
        else:
            counters.failed += 1
            if self._on_error == "fail":
                label = runtime.plan.label
                text = (
                    f"Record {item.seq + 1} of stream {label!r} could not be enriched: {result.error}. "
                    "`on_error` is `fail`, so the sync stops; the records before it are committed."
                )
                self._committer.fail(
                    item.gseq, config_error(text) if result.error_kind == "input" else transient_error(text)
                )


def truncated_change(plan: StreamPlan) -> dict[str, str]:
    return {"field": plan.result_column or "", "change": "TRUNCATED", "reason": "DESTINATION_FIELD_SIZE_LIMITATION"}
