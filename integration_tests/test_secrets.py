"""The key never leaks, and prompt and record contents stay out of the logs.

`test_no_scenario_leaks_the_key_or_contents` runs every scenario of the fault, crash and
hostile-input tests (the registries in integration_tests/hostile_inputs/) with a distinctive key and
distinctive markers in every record and every prompt, then searches everything they produced:
stdout, stderr, log and trace messages, and every output file (DuckDB tables read back, since DuckDB
compresses strings on disk)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from aiohttp import web
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from integration_tests.hostile_inputs import corpus, crashes, faults, source_faults
from integration_tests.hostile_inputs.harness import (
    LEAK_KEY,
    PROMPT_MARK,
    RECORD_MARK,
    catalog_dict,
    chat_config,
    input_lines,
    leaks,
    review,
    write_in_process,
)


def test_no_scenario_leaks_the_key_or_contents(tmp_path):
    captures = []
    with faults.leak_emulator() as emu:
        earlier = corpus.earlier_sync(tmp_path / "earlier", emu.base_url)
        for case in corpus.CASES:
            captures += corpus.run_case(case, tmp_path / "hostile" / case.name, emu.base_url, earlier)
    for family in (faults.SCENARIOS, crashes.SCENARIOS, source_faults.SCENARIOS):
        for scenario in family:
            captures += scenario.run(tmp_path / scenario.name)
    scenarios = len(corpus.CASES) + len(faults.SCENARIOS) + len(crashes.SCENARIOS) + len(source_faults.SCENARIOS)
    assert len({c.label for c in captures}) >= scenarios, "every scenario should have produced output to search"
    assert any(c.files for c in captures), "output files should be searched too"
    hits = leaks(captures, {"api key": LEAK_KEY})
    assert not hits, f"the API key leaked: {hits[:10]}"
    hits = leaks(captures, {"record contents": RECORD_MARK, "prompt contents": PROMPT_MARK}, logs_only=True)
    assert not hits, f"record or prompt contents reached the logs: {hits[:10]}"


class _RedirectingApi:
    """Two loopback servers under different host names: the first answers every request with a
    redirect to the second, which records what it received."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.received: list[tuple[str, str]] = []  # (Authorization header, query string)

    async def _redirect(self, request: web.Request) -> web.Response:
        target = f"http://localhost:{self.other_port}{request.path}"
        raise web.HTTPTemporaryRedirect(target) if self.status == 307 else web.HTTPMovedPermanently(target)

    async def _collect(self, request: web.Request) -> web.Response:
        self.received.append((request.headers.get("Authorization", ""), request.query_string))
        return web.json_response({"choices": [{"message": {"content": "stolen"}}]})

    def __enter__(self):
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def start():
            first, second = web.Application(), web.Application()
            first.router.add_route("*", "/{tail:.*}", self._redirect)
            second.router.add_route("*", "/{tail:.*}", self._collect)
            self.runners = [web.AppRunner(first), web.AppRunner(second)]
            ports = []
            for runner in self.runners:
                await runner.setup()
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                ports.append(site._server.sockets[0].getsockname()[1])
            self.port, self.other_port = ports
            ready.set()

        self.thread = threading.Thread(
            target=lambda: (self.loop.run_until_complete(start()), self.loop.run_forever()), daemon=True
        )
        self.thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc):
        async def stop():
            for runner in self.runners:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.mark.parametrize("status", [307, 301])
@pytest.mark.parametrize("placement", [None, {"method": "query_parameter", "parameter_name": "api_token"}])
def test_the_key_is_not_sent_to_a_host_a_redirect_points_to(tmp_path, status, placement):
    with _RedirectingApi(status) as api:
        config = chat_config(f"http://127.0.0.1:{api.port}", tmp_path / "out.duckdb")
        if placement:
            config["key_placement"] = placement
        capture = write_in_process("redirect", tmp_path / "run", config, catalog_dict(), input_lines([review(1)]))
    assert not any(LEAK_KEY in auth or LEAK_KEY in query_string for auth, query_string in api.received), (
        f"the key followed a redirect to another host: {api.received}"
    )
    assert not api.received, "a redirect is not followed at all: the configured base_url is the only host"
    message = capture.errors[0]["message"] if capture.errors else ""
    assert "redirect" in message and "base_url" in message, (
        f"the sync should stop and say to fix base_url: {capture.describe()}"
    )
    assert LEAK_KEY not in capture.stdout + capture.stderr


def test_source_refuses_to_send_the_key_over_plain_http_to_a_remote_host():
    from source_mistral.source import SourceMistral

    with pytest.raises(AirbyteTracedException) as raised:
        SourceMistral(config={"api_key": LEAK_KEY, "base_url": "http://api.mistral.ai"})
    assert "plain http" in raised.value.message and LEAK_KEY not in raised.value.message
