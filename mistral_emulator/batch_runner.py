"""Batch jobs that really run: QUEUED, then RUNNING while each input line goes through the same
inference code as the synchronous endpoints, then SUCCESS with an output file (and an error file for
failed lines). Counters move as lines complete, so a poller sees progress."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson

from .account import Account
from .endpoints import run_endpoint
from .errors import ApiError, bad_request, detail_item, invalid_model, not_found, validation_error
from .validation import require_object

API_ENDPOINTS = (
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/fim/completions",
    "/v1/moderations",
    "/v1/chat/moderations",
    "/v1/ocr",
    "/v1/classifications",
    "/v1/chat/classifications",
    "/v1/conversations",
    "/v1/audio/transcriptions",
)
TERMINAL = frozenset({"SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", "CANCELLED"})
MAX_INLINE_REQUESTS = 10_000
# Lines processed between two looks at the clock and the cancel flag; keeps the event loop responsive.
CHUNK = 32


class BatchRunner:
    def __init__(self, account: Account):
        self.account = account
        self.tasks: dict[str, asyncio.Task] = {}
        self.inline_requests: dict[str, list[dict]] = {}
        self.outputs: dict[str, list[dict]] = {}

    # ---- API ------------------------------------------------------------------------------------
    def create(self, body: Any) -> dict:
        body = require_object(body)
        errors = []
        if "endpoint" not in body:
            errors.append(detail_item("missing", ["body", "endpoint"], "Field required", body))
        elif body["endpoint"] not in API_ENDPOINTS:
            expected = ", ".join(f"'{e}'" for e in API_ENDPOINTS)
            errors.append(
                detail_item(
                    "enum",
                    ["body", "endpoint"],
                    f"Input should be {expected}",
                    body["endpoint"],
                    {"expected": expected},
                )
            )
        timeout = body.get("timeout_hours", 24)
        if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= 168:
            errors.append(
                detail_item(
                    "less_than_equal" if isinstance(timeout, int) and timeout > 168 else "greater_than_equal",
                    ["body", "timeout_hours"],
                    "Input should be between 1 and 168",
                    timeout,
                )
            )
        requests = body.get("requests")
        if requests is not None:
            if not isinstance(requests, list):
                errors.append(detail_item("list_type", ["body", "requests"], "Input should be a valid list", requests))
            elif len(requests) > MAX_INLINE_REQUESTS:
                errors.append(
                    detail_item(
                        "too_long",
                        ["body", "requests"],
                        f"List should have at most {MAX_INLINE_REQUESTS} items after validation, not {len(requests)}",
                        None,
                        {"field_type": "List", "max_length": MAX_INLINE_REQUESTS, "actual_length": len(requests)},
                    )
                )
            else:
                for i, r in enumerate(requests):
                    if not isinstance(r, dict) or not isinstance(r.get("body"), dict):
                        errors.append(detail_item("missing", ["body", "requests", i, "body"], "Field required", r))
        if errors:
            raise validation_error(errors)
        input_files = body.get("input_files") or []
        if not input_files and not requests:
            raise bad_request("Either input_files or requests must be provided.")
        for file_id in input_files:
            if file_id not in self.account.files:
                raise not_found(f"File {file_id} not found")
        model = body.get("model")
        if model is None and not body.get("agent_id"):
            raise bad_request("Either model or agent_id must be provided.")
        if model is not None and self.account.model(model) is None:
            raise invalid_model(400, model)
        job_id = str(uuid.uuid4())
        if requests:
            self.inline_requests[job_id] = [{"custom_id": r.get("custom_id"), "body": r["body"]} for r in requests]
            total = len(requests)
        else:
            total = sum(self.account.files[f]["num_lines"] or 0 for f in input_files)
        job = {
            "id": job_id,
            "object": "batch",
            "input_files": list(input_files),
            "metadata": body.get("metadata"),
            "endpoint": body["endpoint"],
            "model": model,
            "agent_id": body.get("agent_id"),
            "output_file": None,
            "error_file": None,
            "errors": [],
            "outputs": None,
            "status": "QUEUED",
            "created_at": int(time.time()),
            "total_requests": total,
            "completed_requests": 0,
            "succeeded_requests": 0,
            "failed_requests": 0,
            "started_at": None,
            "completed_at": None,
        }
        self.account.batch_jobs[job_id] = job
        self.account.touch()
        self.tasks[job_id] = asyncio.get_running_loop().create_task(self._run(job_id, timeout * 3600))
        return job

    def view(self, job: dict, inline: bool) -> dict:
        if inline and job["id"] in self.outputs:
            return {**job, "outputs": self.outputs[job["id"]]}
        return job

    def cancel(self, job_id: str) -> dict:
        job = self.account.batch_jobs[job_id]
        if job["status"] in TERMINAL:
            raise bad_request(f"Batch job {job_id} is already {job['status']}.")
        if job_id in self.tasks:
            # The running task notices the flag at its next chunk and finishes as CANCELLED.
            job["status"] = "CANCELLATION_REQUESTED"
        else:
            job.update(status="CANCELLED", completed_at=int(time.time()))
        self.account.touch()
        return job

    def advance(self, job_ids: list[str] | None = None) -> list[str]:
        """Completes jobs that no task drives (the seeded RUNNING/QUEUED ones) right away, running their
        input through inference when the input file exists, so a later re-read sees them finished."""
        done = []
        for job in list(self.account.batch_jobs.values()):
            if job_ids is not None and job["id"] not in job_ids:
                continue
            if job["status"] in TERMINAL or job["id"] in self.tasks:
                continue
            if job["status"] == "CANCELLATION_REQUESTED":
                job.update(status="CANCELLED", completed_at=int(time.time()))
                done.append(job["id"])
                continue
            lines = self._input_lines(job)
            job["started_at"] = job["started_at"] or int(time.time())
            if lines is None:
                job.update(
                    status="SUCCESS",
                    completed_requests=job["total_requests"],
                    succeeded_requests=job["total_requests"] - job["failed_requests"],
                    completed_at=int(time.time()),
                )
            else:
                job.update(total_requests=len(lines), completed_requests=0, succeeded_requests=0, failed_requests=0)
                outputs, failures = [], []
                for n, line in enumerate(lines):
                    self._process_line(job, n, line, outputs, failures)
                self._finish(job, outputs, failures, "SUCCESS")
            done.append(job["id"])
        self.account.touch()
        return done

    def shutdown(self) -> None:
        for task in self.tasks.values():
            task.cancel()

    # ---- execution ----------------------------------------------------------------------------------
    def _input_lines(self, job: dict) -> list[Any] | None:
        if job["id"] in self.inline_requests:
            return list(self.inline_requests[job["id"]])
        lines: list[Any] = []
        for file_id in job["input_files"]:
            content = self.account.content_of(file_id)
            if content is None:
                return None
            for raw in content.splitlines():
                if raw.strip():
                    try:
                        lines.append(orjson.loads(raw))
                    except orjson.JSONDecodeError:
                        lines.append(raw.decode("utf-8", "replace"))
        return lines

    def _process_line(self, job: dict, n: int, line: Any, outputs: list, failures: list) -> None:
        custom_id = line.get("custom_id") if isinstance(line, dict) else None
        out_id = f"batch-{job['id'][:8]}-{n}"
        try:
            if not isinstance(line, dict) or not isinstance(line.get("body"), dict):
                raise bad_request("Each line must be a JSON object with a 'body' object.")
            body = dict(line["body"])
            if job["model"] is not None:
                body.setdefault("model", job["model"])
            response = run_endpoint(job["endpoint"], body, self.account)
        except ApiError as exc:
            message = exc.body.get("message") if isinstance(exc.body, dict) and "message" in exc.body else str(exc.body)
            failures.append(
                {
                    "id": out_id,
                    "custom_id": custom_id,
                    "response": {"status_code": exc.status, "body": exc.body},
                    "error": {"message": message, "code": exc.status},
                }
            )
            job["failed_requests"] += 1
        else:
            outputs.append(
                {
                    "id": out_id,
                    "custom_id": custom_id,
                    "response": {"status_code": 200, "body": response},
                    "error": None,
                }
            )
            job["succeeded_requests"] += 1
        job["completed_requests"] += 1

    def _finish(self, job: dict, outputs: list, failures: list, status: str) -> None:
        def jsonl(rows: list) -> bytes:
            return b"".join(orjson.dumps(r, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n" for r in rows)

        if outputs:
            job["output_file"] = self.account.add_file(
                jsonl(outputs), f"{job['id']}.jsonl", "batch", sample_type="batch_result", source="mistral"
            )["id"]
        if failures:
            job["error_file"] = self.account.add_file(
                jsonl(failures), f"{job['id']}_error.jsonl", "batch", sample_type="batch_error", source="mistral"
            )["id"]
            counts: dict[str, int] = {}
            for f in failures:
                counts[f["error"]["message"]] = counts.get(f["error"]["message"], 0) + 1
            job["errors"] = [{"message": m, "count": c} for m, c in counts.items()]
        if job["id"] in self.inline_requests:
            self.outputs[job["id"]] = [
                orjson.loads(orjson.dumps(r, option=orjson.OPT_SERIALIZE_NUMPY)) for r in outputs + failures
            ]
        job.update(status=status, completed_at=int(time.time()))
        self.account.touch()

    async def _run(self, job_id: str, timeout_seconds: float) -> None:
        account = self.account
        job = account.batch_jobs[job_id]
        settings = account.settings
        try:
            await asyncio.sleep(settings.batch_queue_seconds)
            if job["status"] == "CANCELLATION_REQUESTED":
                job.update(status="CANCELLED", completed_at=int(time.time()))
                account.touch()
                return
            job.update(status="RUNNING", started_at=int(time.time()))
            account.touch()
            lines = self._input_lines(job)
            if lines is None:
                job["errors"] = [{"message": "Input file could not be read", "count": 1}]
                job.update(status="FAILED", completed_at=int(time.time()))
                account.touch()
                return
            job["total_requests"] = len(lines)
            outputs: list = []
            failures: list = []
            deadline = time.monotonic() + timeout_seconds
            for start in range(0, len(lines), CHUNK):
                if job["status"] == "CANCELLATION_REQUESTED":
                    self._finish(job, outputs, failures, "CANCELLED")
                    return
                if time.monotonic() > deadline:
                    self._finish(job, outputs, failures, "TIMEOUT_EXCEEDED")
                    return
                chunk = lines[start : start + CHUNK]
                for n, line in enumerate(chunk, start):
                    self._process_line(job, n, line, outputs, failures)
                account.touch()
                await asyncio.sleep(settings.batch_seconds_per_request * len(chunk))
            final = "CANCELLED" if job["status"] == "CANCELLATION_REQUESTED" else "SUCCESS"
            self._finish(job, outputs, failures, final)
        finally:
            self.tasks.pop(job_id, None)
