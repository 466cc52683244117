"""API fault scenarios for source-mistral: every record of every stream exactly once despite 429s,
5xx, dropped connections and truncated bodies, or a clear failure when retries run out.

The CDK's retries sleep with the manifest's backoff (exponential, factor 1, up to 6 retries: about a
minute when a route keeps failing). The scenarios shorten every sleep to a few milliseconds (the
number and the order of the retries are unchanged), so production backoff stays as it is and the
tests stay fast."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit

import orjson
from airbyte_cdk.models import AirbyteMessageSerializer, SyncMode
from airbyte_cdk.test.catalog_builder import CatalogBuilder
from airbyte_cdk.test.entrypoint_wrapper import read

from integration_tests.hostile_inputs.faults import leak_emulator
from integration_tests.hostile_inputs.harness import LEAK_KEY, Capture, Scenario
from source_mistral.source import SourceMistral

STREAMS = ("models", "files", "batch_jobs", "fine_tuning_jobs", "agents")
_real_sleep = time.sleep


class ReframingProxy:
    """A loopback HTTP proxy in front of the emulator that turns the emulator's cut bodies into what
    outside testers met behind their gateway: HTTP 200 with a Content-Length that matches the cut
    body, so no HTTP client can tell the body was cut; only its JSON is broken. (The emulator itself
    announces the full length and closes early, which the HTTP client already detects.) Dropped
    connections stay dropped; every other answer, headers included, passes through unchanged."""

    def __init__(self, upstream_base_url: str):
        self.upstream = urlsplit(upstream_base_url)
        self.reframed = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # the request line carries the key when it is a query parameter
                pass

            def do_GET(self):
                upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                    upstream.request("GET", self.path, headers=headers)
                    answer = upstream.getresponse()
                    try:
                        body = answer.read()
                    except http.client.IncompleteRead as cut:
                        body = cut.partial
                        proxy.reframed += 1
                except (ConnectionError, http.client.HTTPException, OSError):
                    # The emulator dropped the connection: drop this one too.
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                finally:
                    upstream.close()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> ReframingProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


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
        assert sorted(got) == sorted(expected), (
            f"{stream}: records missing or extra under faults ({len(got)} vs {len(expected)})"
        )
    return [_capture("source, mixed faults", clean), _capture("source, mixed faults", faulty)]


def exhausted_retries_fail_the_stream_clearly(workdir: Path) -> list[Capture]:
    with leak_emulator(fault_500=1.0, fault_routes=["/v1/files"]) as emu:
        output = _read(emu.base_url, ("models", "files"))
        attempts = sum(emu.stats()["routes"].get("GET /v1/files", {}).values())
    errors = [m.trace.error for m in output.errors]
    assert errors, "a stream whose API keeps failing must fail the sync"
    failure_types = {getattr(e.failure_type, "value", e.failure_type) for e in errors}
    assert failure_types <= {"transient_error"}, f"an API that keeps failing is a transient error: {failure_types}"
    assert any(
        "files" in (e.message or "")
        or "files" in (e.internal_message or "")
        or "server error" in (e.message or "").lower()
        for e in errors
    ), [e.message for e in errors]
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
        assert sorted(_ids(faulty, stream)) == sorted(_ids(clean, stream)), (
            f"{stream}: a truncated page must be read again, not skipped"
        )
    return [_capture("source, truncated bodies", faulty)]


SCENARIOS = [
    Scenario(f.__name__, f)
    for f in (
        mixed_faults_on_every_stream,
        exhausted_retries_fail_the_stream_clearly,
        truncated_bodies_are_retried,
    )
]
