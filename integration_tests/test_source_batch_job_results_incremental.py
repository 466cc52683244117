"""batch_job_results is incremental on the jobs' completion time: a later sync downloads only the files
of the jobs that finished since the state (and those of the state's own second, which a job finishing
later in that same second shares), however long ago the jobs were created; and the CDK has nothing to
warn about an ineffective setting."""

from __future__ import annotations

import io
import json
import time

import pytest
import requests
from airbyte_cdk.models import SyncMode
from airbyte_cdk.test.catalog_builder import CatalogBuilder
from airbyte_cdk.test.entrypoint_wrapper import read

from integration_tests.hostile_inputs.source_faults import short_sleeps
from mistral_emulator import EmulatorServer, EmulatorSettings
from source_mistral.source import SourceMistral

KEY = "results-incremental-key-0123"
CONTENT = "GET /v1/files/{file_id}/content"


@pytest.fixture
def emu():
    with EmulatorServer(
        api_key=KEY, settings=EmulatorSettings(seed=7, files=120, batch_jobs=60, agents=2, fine_tuning_jobs=2)
    ) as server:
        yield server


def _read(emu, state=None, mode=SyncMode.incremental):
    config = {"api_key": KEY, "base_url": emu.base_url}
    catalog = CatalogBuilder().with_stream("batch_job_results", mode).build()
    output = read(SourceMistral(config=config, catalog=catalog, state=state), config, catalog, state)
    assert not output.errors, output.get_formatted_error_message()
    return output


def _jobs(emu) -> dict[str, dict]:
    body = requests.get(
        f"{emu.base_url}/v1/batch/jobs",
        params={"page_size": 1000},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    ).json()
    return {job["id"]: job for job in body["data"]}


def _finished_job(emu, lines: int = 3) -> dict:
    headers = {"Authorization": f"Bearer {KEY}"}
    body = "\n".join(json.dumps({"custom_id": f"r{i}", "body": {"input": f"text {i}"}}) for i in range(lines))
    file_id = requests.post(
        f"{emu.base_url}/v1/files",
        headers=headers,
        files={"file": ("in.jsonl", io.BytesIO(body.encode()), "application/jsonl")},
        data={"purpose": "batch"},
        timeout=10,
    ).json()["id"]
    job = requests.post(
        f"{emu.base_url}/v1/batch/jobs",
        headers=headers,
        json={"input_files": [file_id], "endpoint": "/v1/embeddings", "model": "mistral-embed"},
        timeout=10,
    ).json()
    for _ in range(200):
        job = requests.get(f"{emu.base_url}/v1/batch/jobs/{job['id']}", headers=headers, timeout=10).json()
        if job["status"] == "SUCCESS":
            return job
        time.sleep(0.05)
    raise AssertionError(f"batch job did not finish: {job['status']}")


def _by_job(output) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in output.records:
        counts[record.record.data["job_id"]] = counts.get(record.record.data["job_id"], 0) + 1
    return counts


def _downloads(emu) -> int:
    return sum(emu.stats()["routes"].get(CONTENT, {}).values())


def test_second_sync_reads_only_the_results_of_jobs_finished_since_the_state(emu):
    first = _read(emu)
    read_first = _by_job(first)
    assert len(read_first) > 10, "the seeded finished jobs have results"
    state = first.state_messages[-1].state
    newest_completion = max(r.record.data["completed_at"] for r in first.records)
    time.sleep(1.1)  # completed_at has one-second resolution
    job = _finished_job(emu)
    emu.reset_stats()
    second = _read(emu, [state])
    read_again = _by_job(second)
    assert read_again.get(job["id"]) == 3, "the job that finished since the state is read, every line"
    jobs = _jobs(emu)
    boundary = {job_id for job_id in read_again if job_id != job["id"]}
    assert all(jobs[job_id]["completed_at"] == newest_completion for job_id in boundary), (
        f"apart from the new job, only jobs of the state's second come again: {boundary}"
    )
    assert _downloads(emu) <= 1 + 2 * len(boundary), "and only their files are downloaded"


def test_a_job_created_long_ago_that_finishes_after_the_sync_is_read_by_the_next_one(emu):
    running = [j for j in _jobs(emu).values() if j["status"] in ("RUNNING", "QUEUED")]
    assert running, "the emulator seeds unfinished jobs"
    first = _read(emu)
    assert not {j["id"] for j in running} & set(_by_job(first)), "an unfinished job has no results yet"
    time.sleep(1.1)
    emu.advance([running[0]["id"]])
    finished = _jobs(emu)[running[0]["id"]]
    second = _read(emu, [first.state_messages[-1].state])
    if finished.get("output_file") or finished.get("error_file"):
        assert running[0]["id"] in _by_job(second), "the job finished since the state: its results are read"
    assert len(_by_job(second)) < len(_by_job(first)) / 2, "the jobs read by the first sync are not read again"


def test_results_state_keeps_each_parents_position_and_no_setting_is_ineffective(emu):
    output = _read(emu)
    warnings = [m.log.message for m in output.logs if m.log.level.name == "WARN"]
    assert not [w for w in warnings if "no effect" in w or "incremental_dependency" in w], warnings
    state = output.state_messages[-1].state.stream.stream_state.__dict__
    assert set(state["parent_state"]) == {"finished_batch_jobs_outputs", "finished_batch_jobs_errors"}, state
    assert "states" not in state or not state["states"], "no state entry per file: the cursor is the stream's"


def test_results_records_carry_the_jobs_completion_time(emu):
    output = _read(emu, mode=SyncMode.full_refresh)
    jobs = _jobs(emu)
    for record in output.records[:50]:
        data = record.record.data
        assert data["completed_at"] == jobs[data["job_id"]]["completed_at"], data
        assert data["file_id"] == jobs[data["job_id"]][f"{data['file_kind']}_file"], data


def test_a_read_that_fails_on_one_result_file_releases_no_state_and_the_next_read_gets_every_file(emu):
    """The parents' positions move only with the stream's COMPLETE: a file that cannot be downloaded
    fails the read, and no STATE lets the next sync skip that file's job (the CDK's cursor would move
    past a partition that failed)."""
    whole = _by_job(_read(emu))
    broken = sorted(whole)[len(whole) // 2]
    output_file = _jobs(emu)[broken]["output_file"]
    emu.configure(fault_500=1.0, fault_routes=[f"/v1/files/{output_file}/content"])
    config = {"api_key": KEY, "base_url": emu.base_url}
    catalog = CatalogBuilder().with_stream("batch_job_results", SyncMode.incremental).build()
    with short_sleeps():
        failed = read(SourceMistral(config=config, catalog=catalog), config, catalog, expecting_exception=True)
    assert failed.errors, "the file never arrives: the read fails"
    assert not failed.state_messages, "no STATE from a read that did not finish"
    assert failed.get_stream_statuses("batch_job_results")[-1].name == "INCOMPLETE"
    emu.configure(fault_500=0.0, fault_routes=[])
    again = _by_job(_read(emu))
    assert again.get(broken) == whole[broken], "the next read, from the same state, reads the broken job's file"
