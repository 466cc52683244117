"""Delivery through Mistral's Batch API: the records' requests go up as one JSONL file, a batch job
runs them, and the results come back joined by `custom_id`. Half the price upstream and no pressure
on the online rate limit, at the cost of minutes of latency, so it suits large syncs.

The enricher wraps an online one (any mode's: the Batch API takes chat completions, embeddings,
moderations, classifications and OCR, each on its own route): the same prepared inputs, cache keys and
response parsing, so both ways of delivery write the same rows."""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic
from urllib.parse import quote

import orjson

from destination_mistral.enrich.base import Enricher, InputT, OnlineEnricher
from destination_mistral.enrich.batching import Batcher
from destination_mistral.enrich.results import Result, failed
from destination_mistral.http.client import MistralClient
from destination_mistral.http.errors import InvalidAnswer, classify_refusal

logger = logging.getLogger("airbyte")

TERMINAL = frozenset({"SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", "CANCELLED"})
# The docs cap inline batches at 10,000 requests; files take more, but smaller jobs let the first
# results be committed (and STATE acknowledged) sooner.
DEFAULT_REQUESTS_PER_JOB = 10_000


class BatchApiEnricher(Generic[InputT]):
    kind: str

    def __init__(
        self,
        inner: OnlineEnricher[InputT],
        client: MistralClient,
        *,
        requests_per_job: int = DEFAULT_REQUESTS_PER_JOB,
        linger_seconds: float = 2.0,
        poll_first_seconds: float = 1.0,
        poll_max_seconds: float = 30.0,
        timeout_hours: int = 24,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.inner = inner
        self.client = client
        self.kind = inner.kind
        self.endpoint = inner.endpoint
        self.model = inner.model
        self.poll_first_seconds = poll_first_seconds
        self.poll_max_seconds = poll_max_seconds
        self.timeout_hours = timeout_hours
        self._sleep = sleep
        # Jobs are cut by count, and by time when input pauses: a slow source must not hold its
        # records (and the STATE after them) until a job fills.
        self._batcher: Batcher[InputT, Result] | None = None
        self._requests_per_job = requests_per_job
        self._linger = linger_seconds

    @property
    def dimension(self) -> int | None:
        return self.inner.dimension

    def prepare(self, record: Mapping[str, Any]) -> InputT:
        return self.inner.prepare(record)

    def count_tokens(self, items: list[InputT]) -> None:
        """Nothing to count: a job's requests are not paced by tokens."""

    def submit(self, item: InputT) -> asyncio.Future[Result]:
        if self._batcher is None:
            self._batcher = Batcher(
                self._run_job,
                lambda _: 0,
                max_inputs=self._requests_per_job,
                max_tokens=sys.maxsize,
                linger=self._linger,
            )
        return self._batcher.submit(item)

    async def run(self, item: InputT) -> Result:
        return await self.submit(item)

    def flush(self) -> None:
        if self._batcher is not None:
            self._batcher.flush()

    def parse(self, response: Any, items: Sequence[InputT]) -> list[Result]:
        return self.inner.parse(response, items)

    # ---- one job -----------------------------------------------------------------------------------

    def _line_body(self, item: InputT) -> dict[str, Any]:
        body = dict(self.inner.body_for(item))
        body.pop("model", None)  # the job names the model
        return body

    async def _run_job(self, items: list[InputT]) -> list[Result]:
        content = b"".join(
            orjson.dumps({"custom_id": str(i), "body": self._line_body(item)}) + b"\n" for i, item in enumerate(items)
        )
        uploaded = await self.client.upload_file(
            f"destination-mistral-{uuid.uuid4().hex}.jsonl", content, purpose="batch"
        )
        # A token of this job's own in its metadata: a create whose answer was lost is found by it
        # before a retry, instead of creating (and paying for) a second job.
        metadata = {"created_by": "destination-mistral", "request": uuid.uuid4().hex}

        async def created() -> Any | None:
            listed = await self.client.get(f"batch/jobs?metadata={quote(orjson.dumps(metadata).decode())}")
            jobs = [job for job in (listed or {}).get("data") or () if isinstance(job, dict) and job.get("id")]
            return jobs[0] if jobs else None

        job = await self.client.post(
            "batch/jobs",
            {
                "input_files": [uploaded["id"]],
                "endpoint": f"/v1/{self.endpoint}",
                "model": self.model,
                "metadata": metadata,
                "timeout_hours": self.timeout_hours,
            },
            created=created,
        )
        logger.info("Batch job %s created for %d requests", job["id"], len(items))
        try:
            job = await self._wait(job)
        except BaseException:
            await self._cancel(job["id"])
            raise
        logger.info(
            "Batch job %s ended %s: %s succeeded, %s failed",
            job["id"],
            job["status"],
            job.get("succeeded_requests"),
            job.get("failed_requests"),
        )
        answers: dict[str, Result | None] = {}
        if job.get("output_file"):
            await self._read_results(job["output_file"], items, answers)
        if job.get("error_file"):
            await self._read_results(job["error_file"], items, answers)
        # A request the job did not answer usably (the job failed or expired, a line says 5xx or 429,
        # an answer of the wrong shape) is the service's failure, not the record's: it is sent again
        # online, where it is retried and, if the service keeps failing, stops the sync.
        again = [i for i in range(len(items)) if answers.get(str(i)) is None]
        if again:
            logger.warning(
                "Batch job %s ended %s; %d of %d requests without a usable result are sent online",
                job["id"],
                job["status"],
                len(again),
                len(items),
            )
            online = await asyncio.gather(*(self.inner.run(items[i]) for i in again))
            for index, result in zip(again, online, strict=False):
                answers[str(index)] = result
        return [answers[str(i)] for i in range(len(items))]

    async def _wait(self, job: Mapping[str, Any]) -> Mapping[str, Any]:
        """Polls with a backoff that starts quick (small jobs finish in seconds) and settles at
        poll_max_seconds (large ones take minutes to hours)."""
        delay = self.poll_first_seconds
        while job["status"] not in TERMINAL:
            await self._sleep(delay)
            delay = min(delay * 2, self.poll_max_seconds)
            job = await self.client.get(f"batch/jobs/{job['id']}")
        return job

    async def _cancel(self, job_id: str) -> None:
        try:
            await asyncio.shield(self.client.post(f"batch/jobs/{job_id}/cancel", {}))
        except BaseException:  # the sync is already ending for another reason; that one is reported
            logger.warning("Could not cancel batch job %s", job_id)

    async def _read_results(self, file_id: str, items: list[InputT], answers: dict[str, Result | None]) -> None:
        raw = await self.client.get_bytes(f"files/{file_id}/content")
        for line in raw.splitlines():
            if not line.strip():
                continue
            try:
                entry = orjson.loads(line)
                index = int(entry["custom_id"])
                item = items[index]
            except (orjson.JSONDecodeError, KeyError, ValueError, IndexError, TypeError):
                continue  # a line we did not send; records without an answer are reported below
            answers[str(index)] = self._result_of(entry, item)

    def _result_of(self, entry: Mapping[str, Any], item: InputT) -> Result | None:
        """The record's result from its line, or None when the service did not answer it usably."""
        response = entry.get("response") if isinstance(entry.get("response"), Mapping) else {}
        status = response.get("status_code")
        body = response.get("body")
        if status == 200 and entry.get("error") is None:
            try:
                return self.inner.parse(body, [item])[0]
            except InvalidAnswer:
                return None
        error = entry.get("error")
        message = error.get("message") if isinstance(error, Mapping) else error
        if not message and isinstance(body, Mapping):
            message = body.get("message") or body.get("detail")
        text = str(message or "the batch request failed")
        if status in (400, 413, 422):
            kind, _ = classify_refusal(status, body, text)
            if kind != "config":
                # The request of this record was refused for its content.
                return failed(f"HTTP {status}: {text}", kind="input")
        return None


class AutoDeliveryEnricher(Generic[InputT]):
    """`auto`: online for the first `threshold` records of a sync, then the Batch API. A small sync
    gets its answers at once; a large one sends the bulk at batch prices. The choice is made when a
    record is read (the pipeline prepares a chunk before it runs any of it), so it follows input order."""

    def __init__(self, online: Enricher[InputT], batch: BatchApiEnricher[InputT], threshold: int) -> None:
        self.online = online
        self.batch = batch
        self.kind = online.kind
        self.endpoint = online.endpoint
        self.model = online.model
        self.threshold = threshold
        self._seen = 0
        # Inputs of the first `threshold` records, so this set never outgrows the threshold.
        self._online_keys: set[str] = set()

    @property
    def dimension(self) -> int | None:
        return self.online.dimension

    def prepare(self, record: Mapping[str, Any]) -> InputT:
        return self.admit(self.online.prepare(record))

    def admit(self, item: InputT) -> InputT:
        """Chooses the input's way: online while fewer than `threshold` inputs came before it. The
        chunks of chunked embeddings are admitted one by one, so for them the threshold counts chunks."""
        self._seen += 1
        if self._seen <= self.threshold:
            self._online_keys.add(item.key)
        return item

    def count_tokens(self, items: list[InputT]) -> None:
        # Only the online requests are paced by their tokens.
        self.online.count_tokens([item for item in items if item.key in self._online_keys])

    def submit(self, item: InputT) -> asyncio.Future[Result]:
        if item.key in self._online_keys:
            self._online_keys.discard(item.key)
            return self.online.submit(item)
        return self.batch.submit(item)

    async def run(self, item: InputT) -> Result:
        return await self.submit(item)

    def flush(self) -> None:
        self.online.flush()
        self.batch.flush()

    def parse(self, response: Any, items: Sequence[InputT]) -> list[Result]:
        return self.online.parse(response, items)
