"""API fault scenarios for source-mistral: every record of every stream exactly once despite 429s,
5xx, dropped connections and truncated bodies, or a clear failure when retries run out.

The CDK's retries sleep with the manifest's backoff (exponential, factor 1, up to 6 retries: about a
minute when a route keeps failing). The scenarios shorten every sleep to a few milliseconds (the
number and the order of the retries are unchanged), so production backoff stays as it is and the
tests stay fast."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from unittest import mock

import orjson

from airbyte_cdk.models import AirbyteMessageSerializer, SyncMode
from airbyte_cdk.test.catalog_builder import CatalogBuilder
from airbyte_cdk.test.entrypoint_wrapper import read

from integration_tests.hostile_inputs.faults import leak_emulator
from integration_tests.hostile_inputs.harness import LEAK_KEY, Capture, Scenario
from source_mistral.source import SourceMistral

STREAMS = ("models", "files", "batch_jobs", "fine_tuning_jobs", "agents")
_real_sleep = time.sleep


@contextlib.contextmanager
def short_sleeps():
    with mock.patch("time.sleep", lambda seconds: _real_sleep(min(seconds, 0.005))):
        yield


def _read(base_url: str, streams, page_size: int = 20):
    config = {"api_key": LEAK_KEY, "base_url": base_url, "page_size": page_size}
    builder = CatalogBuilder()
    for stream in streams:
        builder.with_stream(stream, SyncMode.full_refresh)
    catalog = builder.build()
    with short_sleeps():
        output = read(SourceMistral(config=config, catalog=catalog), config, catalog, expecting_exception=True)
    return output


def _capture(label: str, output) -> Capture:
    lines = [orjson.dumps(AirbyteMessageSerializer.dump(m)).decode() for m in output._messages]
    return Capture(label, "\n".join(lines), "", 1 if output.errors else 0)


def _ids(output, stream):
    return [r.record.data["id"] for r in output.records if r.record.stream == stream]


def mixed_faults_on_every_stream(workdir: Path) -> list[Capture]:
    with leak_emulator() as emu:
        clean = _read(emu.base_url, STREAMS, page_size=1000)
        emu.configure(fault_429=0.10, fault_500=0.05, fault_drop=0.02, fault_truncate=0.02)
        faulty = _read(emu.base_url, STREAMS)
        injected = emu.stats()["faults"]
    assert not clean.errors, clean.get_formatted_error_message()
    assert not faulty.errors, faulty.get_formatted_error_message()
    assert sum(injected.values()) > 0, f"the emulator should have injected faults: {injected}"
    for stream in STREAMS:
        got, expected = _ids(faulty, stream), _ids(clean, stream)
        assert len(got) == len(set(got)), f"{stream}: a record came twice under faults"
        assert sorted(got) == sorted(expected), f"{stream}: records missing or extra under faults ({len(got)} vs {len(expected)})"
    return [_capture("source, mixed faults", clean), _capture("source, mixed faults", faulty)]


def exhausted_retries_fail_the_stream_clearly(workdir: Path) -> list[Capture]:
    with leak_emulator(fault_500=1.0, fault_routes=["/v1/files"]) as emu:
        output = _read(emu.base_url, ("models", "files"))
        attempts = sum(emu.stats()["routes"].get("GET /v1/files", {}).values())
    errors = [m.trace.error for m in output.errors]
    assert errors, "a stream whose API keeps failing must fail the sync"
    failure_types = {getattr(e.failure_type, "value", e.failure_type) for e in errors}
    assert failure_types <= {"transient_error"}, f"an API that keeps failing is a transient error: {failure_types}"
    assert any("files" in (e.message or "") or "files" in (e.internal_message or "") or "server error" in (e.message or "").lower()
               for e in errors), [e.message for e in errors]
    # One request for the row estimate (best effort, not retried), then the read: one attempt and
    # the manifest's six retries.
    assert attempts == 1 + 7, f"retries must be bounded by max_retries 6: {attempts} requests"
    assert _ids(output, "models"), "the healthy stream is still read"
    return [_capture("source, exhausted retries", output)]


def truncated_bodies_are_retried(workdir: Path) -> list[Capture]:
    with leak_emulator() as emu:
        clean = _read(emu.base_url, ("files", "agents"), page_size=1000)
        emu.configure(fault_truncate=0.3)
        faulty = _read(emu.base_url, ("files", "agents"))
        truncated = emu.stats()["faults"].get("truncate", 0)
    assert not faulty.errors, faulty.get_formatted_error_message()
    assert truncated > 0, "the emulator should have truncated bodies"
    for stream in ("files", "agents"):
        assert sorted(_ids(faulty, stream)) == sorted(_ids(clean, stream)), f"{stream}: a truncated page must be read again, not skipped"
    return [_capture("source, truncated bodies", faulty)]



SCENARIOS = [Scenario(f.__name__, f) for f in (
    mixed_faults_on_every_stream,
    exhausted_retries_fail_the_stream_clearly,
    truncated_bodies_are_retried,
)]
