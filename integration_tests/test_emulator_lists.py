"""Every list endpoint's envelope and pagination, walked to the end."""

from datetime import UTC, datetime

import requests


def _get(emulator, path, params=None):
    r = requests.get(
        emulator.base_url + path, params=params, headers={"Authorization": f"Bearer {emulator.api_key}"}, timeout=10
    )
    assert r.status_code == 200, f"{path} {params}: {r.status_code} {r.text[:200]}"
    return r.json()


def _walk(emulator, path, page_size=100, **params):
    seen, page, pages = [], 0, 0
    while True:
        body = _get(emulator, path, {"page": page, "page_size": page_size, **params})
        assert body["object"] == "list"
        seen.extend(body["data"])
        pages += 1
        if not body["data"] or len(seen) >= body["total"]:
            return body["total"], seen, pages
        page += 1


def test_files_walk_reaches_total_newest_first_without_duplicates(emulator):
    total, files, pages = _walk(emulator, "/v1/files")
    assert total == 250 and len(files) == 250 and pages == 3
    assert len({f["id"] for f in files}) == 250, "no file may appear on two pages"
    stamps = [f["created_at"] for f in files]
    assert stamps == sorted(stamps, reverse=True), "files are listed newest first"


def test_files_filters_and_include_total(emulator):
    body = _get(emulator, "/v1/files", {"purpose": "batch", "page_size": 500})
    assert body["data"] and all(f["purpose"] == "batch" for f in body["data"])
    assert body["total"] == len(body["data"])
    assert _get(emulator, "/v1/files", {"include_total": "false"})["total"] is None
    name = body["data"][0]["filename"]
    assert [f["filename"] for f in _get(emulator, "/v1/files", {"search": name})["data"]] == [name]


def test_batch_jobs_walk_filters_and_order(emulator):
    total, jobs, pages = _walk(emulator, "/v1/batch/jobs")
    assert total == 120 and len({j["id"] for j in jobs}) == 120 and pages == 2
    statuses = {j["status"] for j in jobs}
    assert {"RUNNING", "SUCCESS"} <= statuses, f"seeded jobs should mix statuses, got {statuses}"
    running = _get(emulator, "/v1/batch/jobs", [("status", "RUNNING"), ("status", "QUEUED")])
    assert running["total"] == sum(j["status"] in ("RUNNING", "QUEUED") for j in jobs)
    oldest_first = _get(emulator, "/v1/batch/jobs", {"order_by": "created", "page_size": 1000})["data"]
    assert [j["id"] for j in oldest_first] == [j["id"] for j in reversed(jobs)]


def test_batch_jobs_created_after_is_inclusive(emulator):
    jobs = _get(emulator, "/v1/batch/jobs", {"page_size": 1000})["data"]
    pivot = jobs[40]["created_at"]
    iso = datetime.fromtimestamp(pivot, tz=UTC).isoformat()
    after = _get(emulator, "/v1/batch/jobs", {"created_after": iso, "page_size": 1000})
    assert after["total"] == sum(j["created_at"] >= pivot for j in jobs)
    assert all(j["created_at"] >= pivot for j in after["data"])


def test_fine_tuning_jobs_walk_and_detail(emulator):
    total, jobs, _ = _walk(emulator, "/v1/fine_tuning/jobs", page_size=7)
    assert total == 30 and len({j["id"] for j in jobs}) == 30
    assert {j["job_type"] for j in jobs} <= {"completion", "classifier"}
    detail = _get(emulator, f"/v1/fine_tuning/jobs/{jobs[0]['id']}")
    assert "events" in detail and "checkpoints" in detail


def test_agents_deprecated_list_is_a_bare_array_with_page_numbers(emulator):
    pages, seen, page = 0, [], 0
    while True:
        batch = _get(emulator, "/v1/agents", {"page": page})
        assert isinstance(batch, list), "deprecated /v1/agents returns a bare array"
        if not batch:
            break
        seen.extend(batch)
        pages += 1
        page += 1
    assert len(seen) == 45 and pages == 3, "default page_size is 20"


def test_agents_cursor_pages_end_with_null_token(emulator):
    seen, token, pages = [], None, 0
    while True:
        params = {"page_size": 20}
        if token:
            params["page_token"] = token
        body = _get(emulator, "/v1/agents/pages", params)
        seen.extend(body["data"])
        token = body["next_page_token"]
        pages += 1
        if token is None:
            break
    assert len({a["id"] for a in seen}) == 45 and pages == 3
    assert seen[0]["created_at"].endswith("Z"), "agent timestamps are ISO-8601 strings"


def test_bad_query_values_are_422(emulator):
    r = requests.get(
        emulator.base_url + "/v1/files",
        params={"page": "x"},
        headers={"Authorization": f"Bearer {emulator.api_key}"},
        timeout=10,
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "page"]
