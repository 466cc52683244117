"""Upload, download and batch jobs that really run through the emulator's inference."""

import json
import time

import requests


def _h(emu):
    return {"Authorization": f"Bearer {emu.api_key}"}


def _upload(emu, name, lines, purpose="batch"):
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    r = requests.post(
        emu.base_url + "/v1/files",
        headers=_h(emu),
        timeout=10,
        files={"file": (name, content, "application/jsonl")},
        data={"purpose": purpose},
    )
    assert r.status_code == 200, r.text
    return r.json(), content


def _wait_for(emu, job_id, statuses=("SUCCESS", "FAILED", "CANCELLED", "TIMEOUT_EXCEEDED"), timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = requests.get(f"{emu.base_url}/v1/batch/jobs/{job_id}", headers=_h(emu), timeout=10).json()
        if job["status"] in statuses:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not reach {statuses}")


def test_upload_is_listed_first_and_downloads_byte_for_byte(fresh_emulator):
    meta, content = _upload(fresh_emulator, "in.jsonl", [{"custom_id": "a", "body": {"input": "x"}}] * 3)
    assert meta["num_lines"] == 3 and meta["bytes"] == len(content) and meta["purpose"] == "batch"
    first = requests.get(fresh_emulator.base_url + "/v1/files", headers=_h(fresh_emulator), timeout=10).json()
    assert first["data"][0]["id"] == meta["id"], "a new upload is the newest file"
    assert first["total"] == 251
    got = requests.get(
        f"{fresh_emulator.base_url}/v1/files/{meta['id']}/content", headers=_h(fresh_emulator), timeout=10
    )
    assert got.content == content
    retrieved = requests.get(
        f"{fresh_emulator.base_url}/v1/files/{meta['id']}", headers=_h(fresh_emulator), timeout=10
    ).json()
    assert retrieved["deleted"] is False


def test_signed_url_downloads_without_the_key(fresh_emulator):
    meta, content = _upload(fresh_emulator, "s.jsonl", [{"a": 1}])
    url = requests.get(
        f"{fresh_emulator.base_url}/v1/files/{meta['id']}/url", headers=_h(fresh_emulator), timeout=10
    ).json()["url"]
    assert requests.get(url, timeout=10).content == content
    assert requests.get(url.replace("sig=", "sig=0"), timeout=10).status_code == 403


def test_delete_removes_the_file(fresh_emulator):
    meta, _ = _upload(fresh_emulator, "d.jsonl", [{"a": 1}])
    r = requests.delete(f"{fresh_emulator.base_url}/v1/files/{meta['id']}", headers=_h(fresh_emulator), timeout=10)
    assert r.json() == {"id": meta["id"], "object": "file", "deleted": True}
    assert (
        requests.get(
            f"{fresh_emulator.base_url}/v1/files/{meta['id']}", headers=_h(fresh_emulator), timeout=10
        ).status_code
        == 404
    )


def test_seeded_file_content_matches_its_metadata(emulator):
    files = requests.get(
        emulator.base_url + "/v1/files", params={"purpose": "batch"}, headers=_h(emulator), timeout=10
    ).json()["data"]
    meta = files[0]
    content = requests.get(
        f"{emulator.base_url}/v1/files/{meta['id']}/content", headers=_h(emulator), timeout=10
    ).content
    assert len(content) == meta["bytes"], "bytes must equal the served content length"
    assert len(content.splitlines()) == meta["num_lines"]
    assert all(json.loads(line) for line in content.splitlines())


def test_chat_batch_runs_to_success_with_output_and_error_files(fresh_emulator):
    lines = [
        {"custom_id": str(i), "body": {"max_tokens": 20, "messages": [{"role": "user", "content": f"question {i}"}]}}
        for i in range(5)
    ]
    lines.append({"custom_id": "bad", "body": {"messages": [{"role": "user", "content": "x"}], "store": True}})
    meta, _ = _upload(fresh_emulator, "chat.jsonl", lines)
    created = requests.post(
        fresh_emulator.base_url + "/v1/batch/jobs",
        headers=_h(fresh_emulator),
        timeout=10,
        json={
            "input_files": [meta["id"]],
            "endpoint": "/v1/chat/completions",
            "model": "mistral-small-latest",
            "metadata": {"run": "t1"},
        },
    ).json()
    assert created["status"] == "QUEUED" and created["total_requests"] == 6
    job = _wait_for(fresh_emulator, created["id"])
    assert job["status"] == "SUCCESS"
    assert (job["completed_requests"], job["succeeded_requests"], job["failed_requests"]) == (6, 5, 1)
    assert job["errors"] and job["errors"][0]["count"] == 1
    out = requests.get(
        f"{fresh_emulator.base_url}/v1/files/{job['output_file']}/content", headers=_h(fresh_emulator), timeout=10
    )
    rows = [json.loads(line) for line in out.content.splitlines()]
    assert [r["custom_id"] for r in rows] == ["0", "1", "2", "3", "4"]
    for row in rows:
        assert row["error"] is None and row["response"]["status_code"] == 200
        assert row["response"]["body"]["object"] == "chat.completion"
    errors = requests.get(
        f"{fresh_emulator.base_url}/v1/files/{job['error_file']}/content", headers=_h(fresh_emulator), timeout=10
    )
    bad = json.loads(errors.content.splitlines()[0])
    assert bad["custom_id"] == "bad" and bad["response"]["status_code"] == 422


def test_inline_embeddings_batch_returns_outputs_inline(fresh_emulator):
    created = requests.post(
        fresh_emulator.base_url + "/v1/batch/jobs",
        headers=_h(fresh_emulator),
        timeout=10,
        json={
            "requests": [{"custom_id": "e1", "body": {"input": "hello"}}],
            "endpoint": "/v1/embeddings",
            "model": "mistral-embed",
        },
    ).json()
    _wait_for(fresh_emulator, created["id"])
    job = requests.get(
        f"{fresh_emulator.base_url}/v1/batch/jobs/{created['id']}",
        params={"inline": "true"},
        headers=_h(fresh_emulator),
        timeout=10,
    ).json()
    assert len(job["outputs"][0]["response"]["body"]["data"][0]["embedding"]) == 1024


def test_cancel_stops_a_queued_job(fresh_emulator):
    fresh_emulator.configure(batch_queue_seconds=5)
    created = requests.post(
        fresh_emulator.base_url + "/v1/batch/jobs",
        headers=_h(fresh_emulator),
        timeout=10,
        json={"requests": [{"body": {"input": "x"}}], "endpoint": "/v1/embeddings", "model": "mistral-embed"},
    ).json()
    r = requests.post(
        f"{fresh_emulator.base_url}/v1/batch/jobs/{created['id']}/cancel", headers=_h(fresh_emulator), timeout=10
    )
    assert r.json()["status"] == "CANCELLATION_REQUESTED"


def test_seeded_running_job_finishes_after_advance(fresh_emulator):
    jobs = requests.get(
        fresh_emulator.base_url + "/v1/batch/jobs", params={"status": "RUNNING"}, headers=_h(fresh_emulator), timeout=10
    ).json()["data"]
    assert jobs, "the seeded account should have RUNNING jobs"
    done = requests.post(
        fresh_emulator.base_url + "/admin/advance", json={"job_ids": [jobs[0]["id"]]}, timeout=10
    ).json()
    assert done["completed"] == [jobs[0]["id"]]
    job = requests.get(
        f"{fresh_emulator.base_url}/v1/batch/jobs/{jobs[0]['id']}", headers=_h(fresh_emulator), timeout=10
    ).json()
    assert job["status"] == "SUCCESS" and job["completed_requests"] == job["total_requests"]
    assert job["output_file"], "a finished chat job has an output file"


def test_batch_create_rejects_unknown_files_and_models(fresh_emulator):
    r = requests.post(
        fresh_emulator.base_url + "/v1/batch/jobs",
        headers=_h(fresh_emulator),
        timeout=10,
        json={
            "input_files": ["00000000-0000-4000-8000-000000000000"],
            "endpoint": "/v1/embeddings",
            "model": "mistral-embed",
        },
    )
    assert r.status_code == 404
    r = requests.post(
        fresh_emulator.base_url + "/v1/batch/jobs",
        headers=_h(fresh_emulator),
        timeout=10,
        json={"requests": [{"body": {"input": "x"}}], "endpoint": "/v1/embeddings", "model": "nope"},
    )
    assert r.status_code == 400 and r.json()["type"] == "invalid_model"
