"""source-mistral against the emulator: every record, state that moves correctly, and clear
failures, over real HTTP."""

from __future__ import annotations

import io
import json
import time

import requests
from airbyte_cdk.models import FailureType, Status, SyncMode
from airbyte_cdk.test.catalog_builder import CatalogBuilder
from airbyte_cdk.test.entrypoint_wrapper import read

from source_mistral.source import SourceMistral

STREAMS = ("models", "files", "batch_jobs", "fine_tuning_jobs", "agents", "batch_job_results")


def _config(emulator, **extra):
    return {"api_key": emulator.api_key, "base_url": emulator.base_url, **extra}


def _catalog(*streams: str, mode: SyncMode = SyncMode.full_refresh):
    builder = CatalogBuilder()
    for stream in streams:
        builder.with_stream(stream, SyncMode.full_refresh if stream == "models" else mode)
    return builder.build()


def _read(config, catalog, state=None, **kwargs):
    return read(SourceMistral(config=config, catalog=catalog, state=state), config, catalog, state, **kwargs)


def _ids(output, stream):
    return [r.record.data["id"] for r in output.records if r.record.stream == stream]


def _upload(emulator, name: str, lines: list[dict]) -> str:
    body = "\n".join(json.dumps(line) for line in lines).encode()
    response = requests.post(
        f"{emulator.base_url}/v1/files",
        headers={"Authorization": f"Bearer {emulator.api_key}"},
        files={"file": (name, io.BytesIO(body), "application/jsonl")},
        data={"purpose": "batch"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()["id"]


def _wait_until_finished(emulator, job_id: str) -> None:
    deadline = time.time() + 20
    while time.time() < deadline:
        job = requests.get(
            f"{emulator.base_url}/v1/batch/jobs/{job_id}",
            headers={"Authorization": f"Bearer {emulator.api_key}"},
            timeout=10,
        ).json()
        if job["status"] == "SUCCESS":
            return
        time.sleep(0.1)
    raise AssertionError(f"batch job {job_id} did not finish: {job['status']}")


def _api_ids(emulator, path: str) -> set[str]:
    """What a careful client sees: every page until `total`, straight from the API."""
    ids, page = set(), 0
    while True:
        body = requests.get(
            f"{emulator.base_url}/v1/{path}",
            params={"page": page, "page_size": 1000},
            headers={"Authorization": f"Bearer {emulator.api_key}"},
            timeout=10,
        ).json()
        ids.update(item["id"] for item in body["data"])
        if not body["data"] or len(ids) >= body["total"]:
            return ids
        page += 1


def test_full_read_returns_every_record_of_every_stream_exactly_once(emulator):
    output = _read(_config(emulator), _catalog(*STREAMS))
    assert not output.errors, output.get_formatted_error_message()
    for stream, path in [("files", "files"), ("batch_jobs", "batch/jobs"), ("fine_tuning_jobs", "fine_tuning/jobs")]:
        ids = _ids(output, stream)
        assert len(ids) == len(set(ids)), f"{stream}: duplicate records"
        assert set(ids) == _api_ids(emulator, path), f"{stream}: records missing or extra"
    assert len(_ids(output, "agents")) == len(set(_ids(output, "agents"))) > 20, "agents walk several cursor pages"
    assert "mistral-small-latest" in {
        n
        for r in output.records
        if r.record.stream == "models"
        for n in [r.record.data["id"], *r.record.data.get("aliases", [])]
    }


def test_small_pages_reach_the_same_records_as_large_ones(emulator):
    small = _read(_config(emulator, page_size=7), _catalog("files", "agents"))
    large = _read(_config(emulator, page_size=1000), _catalog("files", "agents"))
    for stream in ("files", "agents"):
        assert sorted(_ids(small, stream)) == sorted(_ids(large, stream)), f"{stream}: page size changed the result"


def test_incremental_files_second_sync_reads_only_new_uploads(fresh_emulator):
    config = _config(fresh_emulator)
    catalog = _catalog("files", mode=SyncMode.incremental)
    first = _read(config, catalog)
    assert len(_ids(first, "files")) == len(_api_ids(fresh_emulator, "files"))
    state = [first.state_messages[-1].state]
    time.sleep(1.1)  # created_at has one-second resolution
    new_id = _upload(fresh_emulator, "new.jsonl", [{"custom_id": "0", "body": {"input": "hello"}}])
    second = _read(config, catalog, state)
    newest_before = max(r.record.data["created_at"] for r in first.records)
    again = [r.record.data for r in second.records if r.record.data["id"] != new_id]
    assert new_id in _ids(second, "files"), "the file uploaded since the last sync is read"
    # The cursor is inclusive, so files created in the very second of the state come again (a file
    # uploaded later in that same second must not be missed); nothing older does.
    assert all(f["created_at"] == newest_before for f in again), f"older files were read again: {again}"


def test_incremental_batch_job_read_while_running_is_read_again_when_finished(fresh_emulator):
    # A seeded job stays unfinished until the emulator is told to finish it (no race between the first
    # read and a queue timer, which a loaded machine can lose). It is days older than the newest job, so
    # only the cursor's look-back, not its inclusive end, brings it back.
    jobs = requests.get(
        f"{fresh_emulator.base_url}/v1/batch/jobs",
        headers={"Authorization": f"Bearer {fresh_emulator.api_key}"},
        params={"page_size": 100},
        timeout=10,
    ).json()["data"]
    newest = max(job["created_at"] for job in jobs)
    unfinished = [
        job
        for job in jobs
        if job["status"] in ("QUEUED", "RUNNING") and newest - 7 * 86400 <= job["created_at"] < newest - 86400
    ]
    assert unfinished, "the seeded account has a job left unfinished in the week before its newest"
    job_id = min(unfinished, key=lambda job: job["created_at"])["id"]
    config = _config(fresh_emulator)
    catalog = _catalog("batch_jobs", mode=SyncMode.incremental)
    first = _read(config, catalog)
    seen = {r.record.data["id"]: r.record.data["status"] for r in first.records}
    assert seen[job_id] in ("QUEUED", "RUNNING"), seen[job_id]
    assert fresh_emulator.advance([job_id]) == [job_id]
    second = _read(config, catalog, [first.state_messages[-1].state])
    again = {r.record.data["id"]: r.record.data["status"] for r in second.records}
    assert again.get(job_id) == "SUCCESS", "the finished job must come again with its final status"


def test_fine_tuning_jobs_answered_404_are_skipped_and_the_sync_succeeds(fresh_emulator):
    fresh_emulator.configure(fine_tuning=False)
    output = _read(_config(fresh_emulator), _catalog("fine_tuning_jobs", "models"))
    assert not output.errors, output.get_formatted_error_message()
    assert _ids(output, "fine_tuning_jobs") == []
    assert _ids(output, "models"), "the other streams are still read"
    assert output.is_in_logs("HTTP 404 for GET /v1/fine_tuning/jobs")


def test_wrong_key_fails_with_one_sentence_naming_api_key(emulator):
    config = {**_config(emulator), "api_key": "wrong-key-123"}
    output = _read(config, _catalog("files"), expecting_exception=True)
    error = output.errors[0].trace.error
    assert error.failure_type == FailureType.config_error
    assert "`api_key`" in error.message and "wrong-key-123" not in error.message


def test_check_against_emulator_reports_unknown_model_with_suggestions(emulator):
    config = _config(emulator, model="mistral-larg-latest")
    source = SourceMistral(config=config)
    status = source.check(None, source.configure(config, "/tmp"))
    assert status.status == Status.FAILED and "mistral-large-latest" in status.message, status.message


def test_key_as_query_parameter_reads_through_a_proxy_style_url(emulator):
    config = _config(emulator, key_placement={"method": "query_parameter", "parameter_name": "api_token"})
    config["base_url"] = emulator.base_url + "/v1/chat/completions"
    output = _read(config, _catalog("models", "files"))
    assert not output.errors and _ids(output, "files")


def test_rate_limits_and_server_faults_lose_no_records(fresh_emulator):
    expected = _api_ids(fresh_emulator, "files")
    fresh_emulator.configure(fault_429=0.15, fault_500=0.1, fault_routes=["GET /v1/files"])
    output = _read(_config(fresh_emulator, page_size=50), _catalog("files"))
    assert not output.errors, output.get_formatted_error_message()
    assert sorted(_ids(output, "files")) == sorted(expected), "every file exactly once despite faults"
    statuses = fresh_emulator.stats()["routes"].get("GET /v1/files", {})
    assert any(code in statuses for code in ("429", "500")), f"faults were injected: {statuses}"


def test_batch_job_results_reads_output_and_error_lines_keyed_by_job_and_custom_id(fresh_emulator):
    file_id = _upload(
        fresh_emulator,
        "in.jsonl",
        [{"custom_id": f"r{i}", "body": {"input": f"text {i}"}} for i in range(3)]
        + [{"custom_id": "empty", "body": {"input": ""}}],
    )
    job = requests.post(
        f"{fresh_emulator.base_url}/v1/batch/jobs",
        headers={"Authorization": f"Bearer {fresh_emulator.api_key}"},
        json={"input_files": [file_id], "endpoint": "/v1/embeddings", "model": "mistral-embed"},
        timeout=10,
    ).json()
    _wait_until_finished(fresh_emulator, job["id"])
    output = _read(_config(fresh_emulator), _catalog("batch_job_results"))
    assert not output.errors, output.get_formatted_error_message()
    mine = {r.record.data["custom_id"]: r.record.data for r in output.records if r.record.data["job_id"] == job["id"]}
    assert set(mine) == {"r0", "r1", "r2", "empty"}, sorted(mine)
    assert all(
        mine[f"r{i}"]["file_kind"] == "output" and mine[f"r{i}"]["response"]["status_code"] == 200 for i in range(3)
    )
    assert mine["empty"]["file_kind"] == "error" and mine["empty"]["error"], mine["empty"]
    keys = [(r.record.data["job_id"], r.record.data["custom_id"]) for r in output.records]
    assert len(keys) == len(set(keys)), "one record per (job_id, custom_id)"


def test_read_emits_row_estimates_for_streams_whose_api_reports_a_total(emulator):
    output = _read(_config(emulator), _catalog("files", "batch_jobs", "models"))
    estimates = {
        m.trace.estimate.name: m.trace.estimate.row_estimate for m in output.trace_messages if m.trace.estimate
    }
    assert estimates == {
        "files": len(_api_ids(emulator, "files")),
        "batch_jobs": len(_api_ids(emulator, "batch/jobs")),
    }, estimates
    statuses = [s.name for s in output.get_stream_statuses("files")]
    assert statuses[0] == "STARTED" and statuses[-1] == "COMPLETE", statuses
