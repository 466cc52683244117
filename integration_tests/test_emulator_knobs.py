"""Latency, rate limits, injected faults and the admin routes that tests use to see what was sent."""

import http.client
import json
import socket
import time

import pytest
import requests

EMBED = {"model": "mistral-embed", "input": ["a", "b", "c"]}


def _h(emu):
    return {"Authorization": f"Bearer {emu.api_key}"}


def _embed(emu, body=EMBED):
    return requests.post(emu.base_url + "/v1/embeddings", json=body, headers=_h(emu), timeout=10)


def test_stats_count_routes_statuses_and_embedding_inputs(fresh_emulator):
    fresh_emulator.reset_stats()
    _embed(fresh_emulator)
    _embed(fresh_emulator, {"model": "mistral-embed", "input": ["x"] * 5})
    _embed(fresh_emulator, {"model": "nope", "input": "x"})
    stats = requests.get(fresh_emulator.base_url + "/admin/stats", timeout=10).json()
    assert stats["routes"]["POST /v1/embeddings"] == {"200": 2, "400": 1}
    assert stats["embeddings"]["inputs"] == 8 and stats["embeddings"]["max_inputs"] == 5
    assert stats["total"] == 3
    requests.post(fresh_emulator.base_url + "/admin/reset", timeout=10)
    assert fresh_emulator.stats()["total"] == 0


def test_admin_config_changes_knobs_at_runtime(fresh_emulator):
    r = requests.post(fresh_emulator.base_url + "/admin/config", json={"latency_ms": 5}, timeout=10)
    assert r.status_code == 200 and r.json()["latency_ms"] == 5
    bad = requests.post(fresh_emulator.base_url + "/admin/config", json={"nope": 1}, timeout=10)
    assert bad.status_code == 400


def test_latency_is_fixed_plus_per_token(fresh_emulator):
    fresh_emulator.configure(latency_ms=60, latency_per_token_ms=0)
    start = time.perf_counter()
    _embed(fresh_emulator)
    assert time.perf_counter() - start >= 0.06
    fresh_emulator.configure(latency_ms=0, latency_per_token_ms=20)
    start = time.perf_counter()
    _embed(fresh_emulator, {"model": "mistral-embed", "input": ["one two three four five"]})
    assert time.perf_counter() - start >= 0.1, "5 tokens at 20 ms each"


def test_rate_limit_answers_429_with_retry_after_and_headers(fresh_emulator):
    fresh_emulator.configure(rate_limit_rps=3)
    responses = [_embed(fresh_emulator) for _ in range(6)]
    codes = [r.status_code for r in responses]
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:], f"burst of 3 then refusals, got {codes}"
    ok, refused = responses[0], next(r for r in responses if r.status_code == 429)
    assert ok.headers["x-ratelimit-limit-req-minute"] == "180"
    assert "x-ratelimit-remaining-req-minute" in ok.headers
    assert refused.json() == {
        "object": "error",
        "message": "Rate limit exceeded",
        "type": "rate_limited",
        "param": None,
        "code": "1300",
    }
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["x-ratelimit-remaining-req-minute"] == "0"
    time.sleep(1.0)
    assert _embed(fresh_emulator).status_code == 200, "the bucket refills"
    assert fresh_emulator.stats()["rate_limited"] >= 1


def test_injected_429_carries_retry_after(fresh_emulator):
    fresh_emulator.configure(fault_429=1.0)
    r = _embed(fresh_emulator)
    assert r.status_code == 429 and r.headers["Retry-After"] == "1" and r.json()["code"] == "1300"


def test_injected_server_errors_have_the_error_envelope(fresh_emulator):
    fresh_emulator.configure(fault_500=1.0)
    codes = set()
    for _ in range(12):
        r = _embed(fresh_emulator)
        codes.add(r.status_code)
        assert r.json()["type"] == "server_error"
    assert codes <= {500, 502, 503} and len(codes) > 1


def _raw_request(emu, path, body):
    host, port = emu.base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("POST", path, body=json.dumps(body), headers={**_h(emu), "Content-Type": "application/json"})
    return conn


def test_dropped_connection_sends_no_response(fresh_emulator):
    fresh_emulator.configure(fault_drop=1.0)
    conn = _raw_request(fresh_emulator, "/v1/embeddings", EMBED)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError, http.client.BadStatusLine)):
        conn.getresponse()
    assert fresh_emulator.stats()["routes"]["POST /v1/embeddings"] == {"dropped": 1}


def test_truncated_body_promises_more_bytes_than_it_sends(fresh_emulator):
    fresh_emulator.configure(fault_truncate=1.0)
    conn = _raw_request(fresh_emulator, "/v1/embeddings", EMBED)
    resp = conn.getresponse()
    assert resp.status == 200
    promised = int(resp.getheader("Content-Length"))
    with pytest.raises(http.client.IncompleteRead) as info:
        resp.read()
    assert 0 < len(info.value.partial) < promised
    assert fresh_emulator.stats()["routes"]["POST /v1/embeddings"] == {"truncated": 1}


def test_truncated_stream_stops_before_done(fresh_emulator):
    fresh_emulator.configure(fault_truncate=1.0)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        r = requests.post(
            fresh_emulator.base_url + "/v1/chat/completions",
            headers=_h(fresh_emulator),
            stream=True,
            timeout=5,
            json={"model": "mistral-small-latest", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        )
        lines = list(r.iter_lines())
        assert b"data: [DONE]" not in lines


def test_fault_routes_limit_faults_to_the_named_routes(fresh_emulator):
    fresh_emulator.configure(fault_500=1.0, fault_routes=["POST /v1/chat/completions"])
    assert _embed(fresh_emulator).status_code == 200
    r = requests.post(
        fresh_emulator.base_url + "/v1/chat/completions",
        headers=_h(fresh_emulator),
        timeout=10,
        json={"model": "mistral-small-latest", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code >= 500


def test_cli_process_prints_its_port_and_serves(emulator_api_key):
    from mistral_emulator import EmulatorProcess, EmulatorSettings

    with EmulatorProcess(api_key=emulator_api_key, settings=EmulatorSettings(files=20_000, batch_jobs=5_000)) as proc:
        r = requests.get(
            proc.base_url + "/v1/files",
            params={"page_size": 1},
            headers={"Authorization": f"Bearer {emulator_api_key}"},
            timeout=10,
        )
        assert r.json()["total"] == 20_000
        assert proc.stats()["routes"]["GET /v1/files"] == {"200": 1}


def test_large_seeded_account_serves_its_last_page():
    # How fast it starts is for the load check to print, not for a test to time.
    from mistral_emulator import EmulatorServer, EmulatorSettings

    with EmulatorServer(settings=EmulatorSettings(files=20_000, batch_jobs=5_000)) as emu:
        body = requests.get(
            emu.base_url + "/v1/files", params={"page": 199, "page_size": 100}, headers=_h(emu), timeout=10
        ).json()
        assert len(body["data"]) == 100 and body["total"] == 20_000


def test_bound_port_is_free_loopback(emulator):
    host, port = emulator.base_url.removeprefix("http://").split(":")
    assert host == "127.0.0.1"
    with socket.create_connection((host, int(port)), timeout=2):
        pass
