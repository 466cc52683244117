"""Batch API delivery without sockets: a job that ends without results leaves per-record errors,
never a gap, and a sync that stops while a job runs cancels it."""

import asyncio

import orjson
import pytest

from destination_mistral.batch_api import BatchApiEnricher
from destination_mistral.config import EmbeddingSettings
from destination_mistral.embeddings import EmbeddingEnricher


class FakeBatchApi:
    def __init__(self, final_status: str, output_lines=(), hang: bool = False):
        self.final_status = final_status
        self.output_lines = list(output_lines)
        self.hang = hang
        self.calls: list[str] = []

    async def upload_file(self, filename, content, purpose):
        self.calls.append(f"upload {purpose}")
        self.uploaded = [orjson.loads(line) for line in content.splitlines()]
        return {"id": "file-in"}

    async def post(self, path, payload):
        self.calls.append(f"POST {path}")
        return {"id": "job-1", "status": "QUEUED"}

    async def get(self, path):
        self.calls.append(f"GET {path}")
        if self.hang:
            await asyncio.sleep(3600)
        output = "file-out" if self.output_lines else None
        return {"id": "job-1", "status": self.final_status, "output_file": output, "error_file": None}

    async def get_bytes(self, path):
        return b"\n".join(orjson.dumps(line) for line in self.output_lines)


def _enricher(api):
    inner = EmbeddingEnricher(EmbeddingSettings(fields=(("text",),)), None)
    return inner, BatchApiEnricher(inner, api, poll_first_seconds=0, linger_seconds=0, sleep=lambda s: asyncio.sleep(0))


async def _run_all(enricher, inner, texts):
    items = [enricher.prepare({"text": t}) for t in texts]
    return await asyncio.gather(*(enricher.run(i) for i in items))


def test_a_job_that_times_out_without_output_gives_every_record_an_error():
    api = FakeBatchApi("TIMEOUT_EXCEEDED")
    inner, enricher = _enricher(api)
    results = asyncio.run(_run_all(enricher, inner, ["a", "b", "c"]))
    assert [r.ok for r in results] == [False, False, False]
    assert all("ended TIMEOUT_EXCEEDED without a result" in r.error for r in results), results[0].error
    assert api.uploaded[0]["custom_id"] == "0" and "model" not in api.uploaded[0]["body"], "the job names the model, lines do not"


def test_lines_missing_from_a_partial_output_become_errors_for_their_records_only():
    vector = {"object": "list", "model": "mistral-embed", "usage": {"prompt_tokens": 1, "total_tokens": 1},
              "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.5]}]}
    api = FakeBatchApi("FAILED", output_lines=[{"id": "b-0", "custom_id": "1", "response": {"status_code": 200, "body": vector}, "error": None}])
    inner, enricher = _enricher(api)
    results = asyncio.run(_run_all(enricher, inner, ["a", "b", "c"]))
    assert [r.ok for r in results] == [False, True, False], [r.error for r in results]


def test_a_sync_stopped_while_a_job_runs_cancels_the_job():
    api = FakeBatchApi("RUNNING", hang=True)
    inner, enricher = _enricher(api)

    async def scenario():
        task = asyncio.ensure_future(_run_all(enricher, inner, ["a"]))
        while not any(c.startswith("GET") for c in api.calls):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)

    asyncio.run(scenario())
    assert "POST batch/jobs/job-1/cancel" in api.calls, api.calls
