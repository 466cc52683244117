"""Batch API delivery without sockets: requests a job did not answer (it failed or expired) are the
service's failure, so they are sent again online rather than written as errors; a line refused for
its input is that record's error; a sync that stops while a job runs cancels it."""

import asyncio
import base64

import numpy as np
import orjson
import pytest

from destination_mistral.enrich.batch_api import BatchApiEnricher
from destination_mistral.enrich.embeddings import EmbeddingEnricher
from destination_mistral.settings import EmbeddingSettings

NAN_BASE64 = base64.b64encode(np.array([np.nan, 1.0], dtype="<f4").tobytes()).decode()


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

    async def post(self, path, payload, cost=0, validate=None, precheck=None, splittable=False, created=None):
        self.calls.append(f"POST {path}")
        if path == "embeddings":  # online
            answer = {
                "model": "mistral-embed",
                "usage": {"prompt_tokens": 1},
                "data": [{"index": i, "embedding": [0.25, 0.75]} for i in range(len(payload["input"]))],
            }
            return validate(answer) if validate else answer
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
    inner = EmbeddingEnricher(EmbeddingSettings(fields=(("text",),), output_dimension=2), api)
    return inner, BatchApiEnricher(inner, api, poll_first_seconds=0, linger_seconds=0, sleep=lambda s: asyncio.sleep(0))


async def _run_all(enricher, inner, texts):
    items = [enricher.prepare({"text": t}) for t in texts]
    return await asyncio.gather(*(enricher.run(i) for i in items))


def test_a_job_that_times_out_without_output_sends_its_requests_online():
    api = FakeBatchApi("TIMEOUT_EXCEEDED")
    inner, enricher = _enricher(api)
    results = asyncio.run(_run_all(enricher, inner, ["a", "b", "c"]))
    assert [r.ok for r in results] == [True, True, True], [r.error for r in results]
    assert "POST embeddings" in api.calls, "the unanswered requests go online"
    assert api.uploaded[0]["custom_id"] == "0" and "model" not in api.uploaded[0]["body"], (
        "the job names the model, lines do not"
    )


def test_only_the_lines_missing_from_a_partial_output_are_sent_online():
    vector = {
        "object": "list",
        "model": "mistral-embed",
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.5]}],
    }
    api = FakeBatchApi(
        "FAILED",
        output_lines=[{"id": "b-0", "custom_id": "1", "response": {"status_code": 200, "body": vector}, "error": None}],
    )
    inner, enricher = _enricher(api)
    results = asyncio.run(_run_all(enricher, inner, ["a", "b", "c"]))
    assert [r.ok for r in results] == [True, True, True], [r.error for r in results]
    assert [list(r.value) for r in results] == [[0.25, 0.75], [0.5, 0.5], [0.25, 0.75]], (
        "the job's answer is kept, the rest came online"
    )


def test_a_line_refused_for_its_input_is_that_records_error_and_a_5xx_line_goes_online():
    vector = {
        "object": "list",
        "model": "mistral-embed",
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.5]}],
    }
    api = FakeBatchApi(
        "SUCCESS",
        output_lines=[
            {
                "custom_id": "0",
                "response": {"status_code": 400, "body": {"message": "Input contains invalid content"}},
                "error": None,
            },
            {"custom_id": "1", "response": {"status_code": 500, "body": {"message": "internal"}}, "error": None},
            {
                "custom_id": "2",
                "response": {"status_code": 200, "body": {**vector, "data": [{"index": 0, "embedding": NAN_BASE64}]}},
                "error": None,
            },
        ],
    )
    inner, enricher = _enricher(api)
    results = asyncio.run(_run_all(enricher, inner, ["a", "b", "c"]))
    assert not results[0].ok and results[0].error_kind == "input" and "invalid content" in results[0].error
    assert results[1].ok and results[2].ok, "a 5xx line and a NaN vector are the service's failures: sent again online"
    assert api.calls.count("POST embeddings") >= 1


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
