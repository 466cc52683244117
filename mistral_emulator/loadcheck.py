"""Throughput check: `python -m mistral_emulator.loadcheck [--seconds 5] [--concurrency 64]`.

Starts the emulator as a separate process (zero latency, no faults), then drives /v1/embeddings
(batches of 32 short inputs) and /v1/chat/completions from concurrent aiohttp clients and prints
requests/s with the CPU share each side used, so it is visible which side is the bottleneck."""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
from collections.abc import Callable

import aiohttp
import orjson

from .server import EmulatorProcess
from .settings import EmulatorSettings

API_KEY = "loadcheck-key"


def _process_cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _drive(
    url: str, make_body: Callable[[int], bytes], seconds: float, concurrency: int, parse: bool
) -> tuple[int, int]:
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    ok = failed = sent = 0
    deadline = time.monotonic() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal ok, failed, sent
        while time.monotonic() < deadline:
            sent += 1
            async with session.post(url, data=make_body(sent), headers=headers) as resp:
                payload = await resp.read()
                if resp.status == 200:
                    if parse:
                        orjson.loads(payload)
                    ok += 1
                else:
                    failed += 1

    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return ok, failed


def run(seconds: float, concurrency: int, parse: bool, limits: bool = False) -> list[dict]:
    def embed_body(encoding: str, unique: bool) -> Callable[[int], bytes]:
        fixed = orjson.dumps(
            {
                "model": "mistral-embed",
                "encoding_format": encoding,
                "input": [f"short input number {i} about invoices and payments" for i in range(32)],
            }
        )
        if not unique:
            return lambda n: fixed
        # Unique texts per request: nothing can come from the emulator's caches, as in a first sync.
        return lambda n: orjson.dumps(
            {
                "model": "mistral-embed",
                "encoding_format": encoding,
                "input": [f"record {n}-{i} about invoices and payments" for i in range(32)],
            }
        )

    chat = orjson.dumps(
        {
            "model": "mistral-small-latest",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "Classify the sentiment of: the parcel arrived late"}],
        }
    )
    scenarios: list[tuple[str, str, Callable[[int], bytes]]] = [
        ("embeddings, 32 inputs, float, repeated", "/v1/embeddings", embed_body("float", False)),
        ("embeddings, 32 inputs, float, unique", "/v1/embeddings", embed_body("float", True)),
        ("embeddings, 32 inputs, base64, unique", "/v1/embeddings", embed_body("base64", True)),
        ("chat/completions", "/v1/chat/completions", lambda n: chat),
    ]
    results = []
    settings = EmulatorSettings(files=1000, batch_jobs=100)
    if limits:
        # Limits far above what the run can reach: every request pays for the checks and headers, none is
        # refused, so the difference with a run without them is the limiter's cost.
        settings.update(rate_limit_rps=1e9, tokens_per_minute=1e15, tokens_per_month=10**18)
    with EmulatorProcess(api_key=API_KEY, settings=settings) as proc:
        assert proc.proc is not None
        for name, path, body in scenarios:
            # A short warm-up so connection set-up and caches do not count.
            asyncio.run(_drive(proc.base_url + path, body, 0.5, concurrency, parse))
            server_cpu0, client_cpu0, t0 = _process_cpu_seconds(proc.proc.pid), _own_cpu_seconds(), time.monotonic()
            ok, failed = asyncio.run(_drive(proc.base_url + path, body, seconds, concurrency, parse))
            wall = time.monotonic() - t0
            server_cpu1, client_cpu1 = _process_cpu_seconds(proc.proc.pid), _own_cpu_seconds()
            server_share = (
                (server_cpu1 - server_cpu0) / wall if server_cpu0 is not None and server_cpu1 is not None else None
            )
            results.append(
                {
                    "scenario": name,
                    "requests_per_s": ok / wall,
                    "errors": failed,
                    "server_cpu": server_share,
                    "client_cpu": (client_cpu1 - client_cpu0) / wall,
                }
            )
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--parse", action="store_true", help="also parse each response body in the client (orjson)")
    p.add_argument("--limits", action="store_true", help="all account limits on, set too high to refuse anything")
    args = p.parse_args(argv)
    results = run(args.seconds, args.concurrency, args.parse, args.limits)
    print(f"{'scenario':<40} {'req/s':>9} {'errors':>7} {'server CPU':>11} {'client CPU':>11}")
    for r in results:
        server = f"{r['server_cpu'] * 100:.0f}%" if r["server_cpu"] is not None else "n/a"
        print(
            f"{r['scenario']:<40} {r['requests_per_s']:>9.0f} {r['errors']:>7} {server:>11} "
            f"{r['client_cpu'] * 100:>10.0f}%"
        )
    print(
        f"(concurrency {args.concurrency}, {args.seconds:.0f} s per scenario, {os.cpu_count()} cores; "
        "a side near 100% CPU is the bottleneck)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
