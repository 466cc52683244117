"""source-mistral under an API rate limit far below what its config allows: the 429s are the API's
queue, so every stream is read whole, without an error, whatever `requests_per_second` and
`num_workers` say; and when the API refuses everything for longer than the source waits, the read
fails as a transient error with no stream reported complete."""

from __future__ import annotations

import itertools
from unittest import mock

import requests
from airbyte_cdk.models import SyncMode
from airbyte_cdk.test.catalog_builder import CatalogBuilder
from airbyte_cdk.test.entrypoint_wrapper import read

from integration_tests.hostile_inputs.source_faults import short_sleeps
from integration_tests.test_source_completeness import _keys
from mistral_emulator import EmulatorServer, EmulatorSettings
from source_mistral import components
from source_mistral.source import SourceMistral

KEY = "backpressure-key"
STREAMS = ("models", "files", "batch_jobs", "fine_tuning_jobs", "agents", "batch_job_results")
SIZES = dict(files=150, batch_jobs=48, agents=20, fine_tuning_jobs=10)


def _read(base_url, streams, **extra):
    config = {"api_key": KEY, "base_url": base_url, "page_size": 50, **extra}
    builder = CatalogBuilder()
    for stream in streams:
        builder.with_stream(stream, SyncMode.full_refresh)
    catalog = builder.build()
    return read(SourceMistral(config=config, catalog=catalog), config, catalog, expecting_exception=True)


def test_a_rate_limit_below_the_configured_pace_and_workers_is_waited_out_and_every_record_is_read():
    with EmulatorServer(api_key=KEY, settings=EmulatorSettings(seed=11, **SIZES)) as emu:
        held = _read(emu.base_url, STREAMS)
        assert not held.errors, held.get_formatted_error_message()
        emu.configure(rate_limit_rps=2)
        emu.reset_stats()
        # Real sleeps: the waits Retry-After asks for are what is under test. Sixteen workers and ten
        # requests a second against an API that serves two: most requests are refused many times over.
        output = _read(emu.base_url, STREAMS, num_workers=16, requests_per_second=10)
        refused = emu.stats()["rate_limited"]
    assert refused > 0, "the API's rate limit should have refused requests"
    assert not output.errors, output.get_formatted_error_message()
    for stream in STREAMS:
        got = _keys(output, stream)
        assert got, f"{stream}: the emulator holds records"
        assert got == _keys(held, stream), (
            f"{stream}: {len(got)} records under the rate limit, {len(_keys(held, stream))} without"
        )
        assert "COMPLETE" in [s.name for s in output.get_stream_statuses(stream)], stream


def test_result_files_refused_for_longer_than_max_time_fail_the_read_and_the_stream_is_not_complete():
    with EmulatorServer(api_key=KEY, settings=EmulatorSettings(seed=11, **{**SIZES, "batch_jobs": 8})) as emu:
        jobs = requests.get(
            f"{emu.base_url}/v1/batch/jobs",
            params={"page_size": 1000},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=30,
        ).json()["data"]
        files = {job[key] for job in jobs for key in ("output_file", "error_file") if job.get(key)}
        assert files, "finished batch jobs have result files"
        emu.configure(fault_429=1.0, fault_routes=[f"/v1/files/{file_id}/content" for file_id in files])
        # A minute passes between two looks at the clock: the handler's ten minutes go by in a few refusals.
        with (
            short_sleeps(),
            mock.patch.object(components, "_clock", itertools.count(step=60).__next__),
            mock.patch.object(components, "_API_PROGRESS", components._ApiProgress()),
        ):
            output = _read(emu.base_url, ("batch_job_results",))
    errors = [m.trace.error for m in output.errors]
    assert errors, "result files the API never serves must fail the read"
    assert {getattr(e.failure_type, "value", e.failure_type) for e in errors} == {"transient_error"}, errors
    assert "COMPLETE" not in [s.name for s in output.get_stream_statuses("batch_job_results")]
