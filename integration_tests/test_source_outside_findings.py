"""source-mistral: failures an outside tester found, each kept from coming back. The commands run as
the platform runs them (the console script in a subprocess) wherever what matters is the whole
output: a leaked key or a traceback shows there and nowhere else."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import requests
from airbyte_cdk.models import FailureType, SyncMode
from airbyte_cdk.test.catalog_builder import CatalogBuilder
from airbyte_cdk.test.entrypoint_wrapper import read
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from integration_tests.hostile_inputs.source_faults import short_sleeps
from mistral_connection import secret_forms
from mistral_emulator import EmulatorServer, EmulatorSettings
from source_mistral.source import SourceMistral

REPO_ROOT = Path(__file__).resolve().parent.parent
# Keys holding the three characters a URL encoder rewrites: the server's and a wrong one.
SERVER_KEY = "S3CRETzz+/=ab"
WRONG_KEY = "BADKEYzz+/="
QUERY_PLACEMENT = {"method": "query_parameter", "parameter_name": "api_token"}


def _source_command() -> list[str]:
    script = Path(sys.executable).with_name("source-mistral")
    return [str(script)] if script.exists() else [sys.executable, "-m", "source_mistral.run"]


def _run(
    tmp_path: Path, command: str, config: dict, streams: tuple[str, ...] = ("models",)
) -> subprocess.CompletedProcess:
    config_path = tmp_path / f"config-{command}.json"
    config_path.write_text(json.dumps(config))
    args = [*_source_command(), command, "--config", str(config_path)]
    if command == "read":
        catalog = {
            "streams": [
                {
                    "stream": {"name": name, "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
                    "sync_mode": "full_refresh",
                    "destination_sync_mode": "overwrite",
                }
                for name in streams
            ]
        }
        catalog_path = tmp_path / "catalog.json"
        catalog_path.write_text(json.dumps(catalog))
        args += ["--catalog", str(catalog_path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)


def _messages(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _errors(stdout: str) -> list[dict]:
    return [m["trace"]["error"] for m in _messages(stdout) if m.get("type") == "TRACE" and m["trace"].get("error")]


def _connection_status(stdout: str) -> dict | None:
    return next((m["connectionStatus"] for m in _messages(stdout) if m.get("type") == "CONNECTION_STATUS"), None)


def _catalog(*streams: str):
    builder = CatalogBuilder()
    for stream in streams:
        builder.with_stream(stream, SyncMode.full_refresh)
    return builder.build()


# ---- 1. the key in every URL-encoded form ---------------------------------------------------------


def _spellings(key: str) -> dict[str, str]:
    """Computed here, not with the code under test, so that a form it forgot is still looked for."""
    spellings = {"plain": key, "quote": quote(key), "quote_plus": quote_plus(key), "quote safe=''": quote(key, safe="")}
    spellings.update(
        {
            f"{name}, lower-case escapes": form.replace("%2B", "%2b").replace("%2F", "%2f").replace("%3D", "%3d")
            for name, form in list(spellings.items())
        }
    )
    return spellings


@pytest.fixture
def query_key_emulator():
    with EmulatorServer(
        api_key=SERVER_KEY,
        settings=EmulatorSettings(
            seed=7, files=5, batch_jobs=0, agents=0, fine_tuning_jobs=0, auth_query_params=("api_token",)
        ),
    ) as server:
        yield server


def test_query_placed_key_never_appears_plain_or_url_encoded_in_check_or_read_output(query_key_emulator, tmp_path):
    config = {"api_key": WRONG_KEY, "base_url": query_key_emulator.base_url, "key_placement": QUERY_PLACEMENT}
    check = _run(tmp_path, "check", config)
    read_run = _run(tmp_path, "read", config, ("models", "files"))
    # The failures these runs must report are the ones whose log lines carry the request URL.
    assert (_connection_status(check.stdout) or {}).get("status") == "FAILED", check.stdout[-2000:]
    assert "401" in check.stdout and "/v1/models?api_token=" in check.stdout, "the request URL is logged, masked"
    assert any(e["failure_type"] == "config_error" for e in _errors(read_run.stdout)), read_run.stdout[-2000:]
    leaks = [
        f"{name} form in {command} {place}"
        for name, form in _spellings(WRONG_KEY).items()
        for command, run in (("check", check), ("read", read_run))
        for place, text in (("stdout", run.stdout), ("stderr", run.stderr))
        if form in text
    ]
    assert not leaks, leaks


def test_query_placed_key_never_appears_url_encoded_when_the_key_is_right_and_the_read_succeeds(
    query_key_emulator, tmp_path
):
    config = {"api_key": SERVER_KEY, "base_url": query_key_emulator.base_url, "key_placement": QUERY_PLACEMENT}
    run = _run(tmp_path, "read", config, ("models", "files"))
    assert run.returncode == 0 and not _errors(run.stdout), run.stdout[-2000:]
    leaks = [name for name, form in _spellings(SERVER_KEY).items() if form in run.stdout or form in run.stderr]
    assert not leaks, leaks


def test_secret_forms_cover_every_url_encoding_of_the_key():
    forms = secret_forms(" " + WRONG_KEY + " ")
    assert set(_spellings(WRONG_KEY).values()) <= set(forms), forms
    assert secret_forms("") == [] and secret_forms("   ") == []


# ---- 2. and 3. config values the spec refuses ------------------------------------------------------


@pytest.mark.parametrize("start_date", ["2025-13-01T00:00:00Z", "2025-02-30T00:00:00Z", "2025-01-01T24:00:00Z"])
@pytest.mark.parametrize("command", ["check", "discover", "read"])
def test_impossible_calendar_start_date_is_a_config_error_naming_start_date(command, start_date, tmp_path):
    config = {"api_key": "a-key", "base_url": "http://127.0.0.1:9", "start_date": start_date}
    run = _run(tmp_path, command, config)
    errors = _errors(run.stdout)
    assert errors and all(e["failure_type"] == "config_error" for e in errors), run.stdout[-2000:]
    assert "`start_date`" in errors[0]["message"] and "YYYY-MM-DDTHH:MM:SSZ" in errors[0]["message"], errors[0]
    assert "Traceback" not in run.stdout + run.stderr
    if command == "check":
        status = _connection_status(run.stdout)
        assert status and status["status"] == "FAILED" and "`start_date`" in status["message"], run.stdout[-2000:]


@pytest.mark.parametrize(
    "field, value",
    [
        ("num_workers", 0),
        ("num_workers", -1),
        ("num_workers", 17),
        ("num_workers", "4x"),
        ("page_size", 0),
        ("page_size", 1001),
        ("requests_per_second", 0),
        ("requests_per_second", 1001),
    ],
)
def test_out_of_range_sync_field_is_a_config_error_naming_the_field(field, value):
    with pytest.raises(AirbyteTracedException) as raised:
        SourceMistral(config={"api_key": "a-key", "base_url": "http://127.0.0.1:9", field: value})
    assert raised.value.failure_type == FailureType.config_error
    assert f"`{field}`" in raised.value.message, raised.value.message


def test_zero_workers_check_answers_failed_connection_status_without_a_traceback(tmp_path):
    run = _run(tmp_path, "check", {"api_key": "a-key", "base_url": "http://127.0.0.1:9", "num_workers": 0})
    status = _connection_status(run.stdout)
    assert status and status["status"] == "FAILED" and "`num_workers`" in status["message"], run.stdout[-2000:]
    assert "Traceback" not in run.stdout + run.stderr and "AssertionError" not in run.stdout + run.stderr


def test_valid_sync_fields_are_still_accepted():
    # The config checks must not refuse what the spec allows.
    SourceMistral(
        config={
            "api_key": "a-key",
            "base_url": "http://127.0.0.1:9",
            "start_date": "2024-02-29T23:59:59Z",
            "num_workers": 16,
            "page_size": 1000,
            "requests_per_second": 1,
        }
    )


# ---- 4. a result file cut short on the wire ---------------------------------------------------------


def _finished_batch_job(emulator: EmulatorServer) -> dict:
    headers = {"Authorization": f"Bearer {emulator.api_key}"}
    body = "\n".join(json.dumps({"custom_id": f"r{i}", "body": {"input": f"text {i}"}}) for i in range(3)).encode()
    file_id = requests.post(
        f"{emulator.base_url}/v1/files",
        headers=headers,
        data={"purpose": "batch"},
        files={"file": ("in.jsonl", io.BytesIO(body), "application/jsonl")},
        timeout=10,
    ).json()["id"]
    job = requests.post(
        f"{emulator.base_url}/v1/batch/jobs",
        headers=headers,
        timeout=10,
        json={"input_files": [file_id], "endpoint": "/v1/embeddings", "model": "mistral-embed"},
    ).json()
    emulator_job = job
    for _ in range(200):
        emulator_job = requests.get(
            f"{emulator.base_url}/v1/batch/jobs/{job['id']}", headers=headers, timeout=10
        ).json()
        if emulator_job["status"] == "SUCCESS":
            return emulator_job
        time.sleep(0.1)
    raise AssertionError(f"batch job did not finish: {emulator_job['status']}")


def test_truncated_result_file_download_ends_the_sync_as_transient_error():
    settings = EmulatorSettings(seed=7, files=0, batch_jobs=0, agents=0, fine_tuning_jobs=0)
    with EmulatorServer(api_key="results-key", settings=settings) as emulator:
        job = _finished_batch_job(emulator)
        emulator.configure(fault_truncate=1.0, fault_routes=[f"/v1/files/{job['output_file']}/content"])
        config = {"api_key": emulator.api_key, "base_url": emulator.base_url}
        catalog = _catalog("batch_jobs", "batch_job_results")
        # Short sleeps: every retry of the download is truncated again, so only their count matters.
        with short_sleeps():
            output = read(SourceMistral(config=config, catalog=catalog), config, catalog, expecting_exception=True)
        truncated = {
            route: outcomes for route, outcomes in emulator.stats()["routes"].items() if route.endswith("/content")
        }
    assert any(outcomes.get("truncated") for outcomes in truncated.values()), f"the fault was injected: {truncated}"
    assert output.errors, "a file that never arrives whole must fail the sync"
    types = [e.trace.error.failure_type for e in output.errors]
    assert types[-1] == FailureType.transient_error, [
        (e.trace.error.failure_type, e.trace.error.message) for e in output.errors
    ]
    assert FailureType.config_error not in types and FailureType.system_error not in types, types


# ---- 5. the fine_tuning_jobs skip is a warning ------------------------------------------------------


def test_fine_tuning_jobs_404_skip_is_logged_at_warn(fresh_emulator):
    fresh_emulator.configure(fine_tuning=False)
    config = {"api_key": fresh_emulator.api_key, "base_url": fresh_emulator.base_url}
    catalog = _catalog("fine_tuning_jobs")
    output = read(SourceMistral(config=config, catalog=catalog), config, catalog)
    assert not output.errors, output.get_formatted_error_message()
    warnings = [m.log.message for m in output.logs if m.log.level.name == "WARN"]
    assert any("Skipping stream fine_tuning_jobs" in text and "/v1/fine_tuning/jobs" in text for text in warnings), (
        warnings
    )


# ---- 6. the row-estimate requests count against requests_per_second -------------------------------


def test_no_one_second_window_exceeds_requests_per_second_including_row_estimates(emulator, monkeypatch):
    # Each request's send time is recorded where every request of the source passes (the HTTP
    # adapter), and the windows are counted afterwards: the assertion counts requests, it does not
    # depend on how fast the machine is.
    import requests.adapters

    sent: list[float] = []
    original = requests.adapters.HTTPAdapter.send

    def recording_send(self, request, *args, **kwargs):
        if "/v1/" in request.url:
            sent.append(time.monotonic())
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", recording_send)
    cap = 4
    config = {"api_key": emulator.api_key, "base_url": emulator.base_url, "requests_per_second": cap, "page_size": 100}
    catalog = _catalog("files", "batch_jobs", "fine_tuning_jobs", "models")
    output = read(SourceMistral(config=config, catalog=catalog), config, catalog)
    assert not output.errors, output.get_formatted_error_message()
    estimates = [m for m in output.trace_messages if m.trace.estimate]
    assert len(estimates) == 3, "the estimate requests were sent, so they are among the counted ones"
    # The budget spaces the moments requests are let go; the adapter sees them a little later, each
    # after its own scheduling delay, which on a loaded machine reaches tens of milliseconds. Windows
    # a tenth of a second shorter than the cap's second absorb that jitter, and still catch two
    # paces adding up (twice the cap within a second).
    busiest = max(sum(1 for t in sent if start <= t < start + 0.9) for start in sent)
    assert busiest <= cap, f"{busiest} requests within 0.9 s, cap {cap} per second ({len(sent)} requests in all)"
