"""source-mistral against an API that does not serve every route (a proxy or a deployment without
agents, the current API without fine-tuning jobs): the stream whose route answers 404 or 405 is
skipped with a warning naming it and the route, its status is INCOMPLETE (it was not read whole),
and the sync reads the others and succeeds. `check`
reads the models, so it fails, naming the route, when that one is absent."""

from __future__ import annotations

import pytest
from airbyte_cdk.models import Status, SyncMode
from airbyte_cdk.test.catalog_builder import CatalogBuilder
from airbyte_cdk.test.entrypoint_wrapper import read

from mistral_emulator import EmulatorServer, EmulatorSettings
from source_mistral.source import SourceMistral

KEY = "absent-routes-key-0123"
STREAMS = ("models", "files", "batch_jobs", "fine_tuning_jobs", "agents", "batch_job_results")
SIZES = dict(files=40, batch_jobs=24, agents=12, fine_tuning_jobs=6)


@pytest.fixture
def emu():
    with EmulatorServer(api_key=KEY, settings=EmulatorSettings(seed=3, **SIZES)) as server:
        yield server


def _read(emu, streams=STREAMS):
    config = {"api_key": KEY, "base_url": emu.base_url}
    builder = CatalogBuilder()
    for stream in streams:
        builder.with_stream(stream, SyncMode.full_refresh)
    catalog = builder.build()
    return read(SourceMistral(config=config, catalog=catalog), config, catalog, expecting_exception=True)


def _warnings(output) -> list[str]:
    return [m.log.message for m in output.logs if m.log.level.name == "WARN"]


def _count(output, stream: str) -> int:
    return sum(1 for r in output.records if r.record.stream == stream)


@pytest.mark.parametrize(
    "stream, route",
    [
        ("agents", "/v1/agents/pages"),
        ("fine_tuning_jobs", "/v1/fine_tuning/jobs"),
        ("batch_jobs", "/v1/batch/jobs"),
        ("files", "/v1/files"),
        ("models", "/v1/models"),
    ],
)
def test_a_stream_whose_route_answers_404_is_skipped_with_a_warning_and_the_other_streams_are_read(emu, stream, route):
    emu.configure(absent_routes=[route])
    output = _read(emu)
    assert not output.errors, output.get_formatted_error_message()
    assert _count(output, stream) == 0
    skipped = [w for w in _warnings(output) if w.startswith(f"Skipping stream {stream}:")]
    assert skipped and f"GET {route}" in skipped[0] and "HTTP 404" in skipped[0], _warnings(output)
    others = [s for s in ("models", "files", "batch_jobs", "agents") if s != stream]
    assert all(_count(output, other) > 0 for other in others), {s: _count(output, s) for s in STREAMS}
    # Not read whole: a destination that replaces a stream when it completes keeps what it holds.
    assert output.get_stream_statuses(stream)[-1].name == "INCOMPLETE"
    assert all(output.get_stream_statuses(other)[-1].name == "COMPLETE" for other in others)


def test_every_list_route_absent_but_models_still_reads_the_models_and_succeeds(emu):
    emu.configure(
        absent_routes=["/v1/files", "/v1/batch/jobs", "/v1/fine_tuning/jobs", "/v1/agents/pages"],
    )
    output = _read(emu)
    assert not output.errors, output.get_formatted_error_message()
    assert _count(output, "models") > 0
    named = {w.split(":", 1)[0] for w in _warnings(output) if w.startswith("Skipping stream ")}
    assert {f"Skipping stream {s}" for s in ("files", "batch_jobs", "fine_tuning_jobs", "agents")} <= named, named


@pytest.mark.parametrize(
    "stream, route",
    [
        ("agents", "/v1/agents/pages"),
        # Asked once per 30-day window.
        ("batch_jobs", "/v1/batch/jobs"),
        # Asked by both parent lists, outputs and errors.
        ("batch_job_results", "/v1/batch/jobs"),
    ],
)
def test_each_skipped_route_is_warned_once_per_stream(emu, stream, route):
    emu.configure(absent_routes=[route])
    output = _read(emu, (stream,))
    warned = [w for w in _warnings(output) if w.startswith(f"Skipping stream {stream}:")]
    assert len(warned) == 1 and f"GET {route}" in warned[0], _warnings(output)


def test_a_result_file_the_api_no_longer_serves_is_skipped_and_the_other_results_are_read(emu):
    whole = _read(emu, ("batch_job_results",))
    assert not whole.errors, whole.get_formatted_error_message()
    by_file: dict[str, int] = {}
    for record in whole.records:
        by_file[record.record.data["file_id"]] = by_file.get(record.record.data["file_id"], 0) + 1
    gone = sorted(by_file)[0]
    emu.configure(absent_routes=[f"/v1/files/{gone}/content"])
    output = _read(emu, ("batch_job_results",))
    assert not output.errors, output.get_formatted_error_message()
    assert {r.record.data["file_id"] for r in output.records} == set(by_file) - {gone}
    assert _count(output, "batch_job_results") == len(whole.records) - by_file[gone]
    assert any(f"/v1/files/{gone}/content" in w for w in _warnings(output)), _warnings(output)
    assert output.get_stream_statuses("batch_job_results")[-1].name == "COMPLETE", "a gone file is not a gone list"


def test_check_fails_naming_the_models_route_when_the_api_does_not_serve_it(emu):
    emu.configure(absent_routes=["/v1/models"])
    config = {"api_key": KEY, "base_url": emu.base_url}
    source = SourceMistral(config=config)
    status = source.check(None, source.configure(config, "/tmp"))
    assert status.status == Status.FAILED
    assert "GET /v1/models" in status.message and "HTTP 404" in status.message, status.message
    assert "`base_url`" in status.message and "not offered" not in status.message, status.message


def test_check_still_succeeds_when_only_other_routes_are_absent(emu):
    emu.configure(absent_routes=["/v1/agents/pages", "/v1/fine_tuning/jobs"])
    config = {"api_key": KEY, "base_url": emu.base_url}
    source = SourceMistral(config=config)
    assert source.check(None, source.configure(config, "/tmp")).status == Status.SUCCEEDED
