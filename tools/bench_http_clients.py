"""CPU per request of HTTP clients at high concurrency: `python tools/bench_http_clients.py`.

destination-mistral sends its requests with aiohttp. This measures that choice against the other
clients Python code typically uses for the same job: httpx's AsyncClient (what the official
`mistralai` SDK and LangChain use) and `requests` in a thread pool. Each client runs in its own
process against the emulator, which runs in another, and sends the same chat requests with the
same concurrency. What counts is the client process's own CPU time per request (user + system,
from getrusage): on 2 cores, every millisecond a client spends is one the server and the rest of
the pipeline do not get.
Results: bench-results/http_clients.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench-results"
API_KEY = "bench-key-0123456789"
CLIENTS = ("aiohttp", "httpx", "requests-threads")


def _body(i: int) -> bytes:
    import orjson

    return orjson.dumps(
        {
            "model": "mistral-small-latest",
            "max_tokens": 8,
            "temperature": 0,
            "messages": [{"role": "user", "content": f"Classify review {i}: the battery is great."}],
        }
    )


async def _aiohttp(url: str, count: int, concurrency: int) -> None:
    import aiohttp
    import orjson

    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), headers=headers) as session:

        async def one(i: int) -> None:
            async with session.post(url, data=_body(i)) as response:
                orjson.loads(await response.read())

        await _bounded(one, count, concurrency)


async def _httpx(url: str, count: int, concurrency: int) -> None:
    import httpx
    import orjson

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=60) as client:

        async def one(i: int) -> None:
            response = await client.post(url, content=_body(i))
            orjson.loads(response.content)

        await _bounded(one, count, concurrency)


async def _bounded(one, count: int, concurrency: int) -> None:
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            await one(queue.pop())

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _requests_threads(url: str, count: int, concurrency: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import orjson
    import requests

    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=concurrency, pool_maxsize=concurrency)
    session.mount("http://", adapter)
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}

    def one(i: int) -> None:
        orjson.loads(session.post(url, data=_body(i), headers=headers, timeout=60).content)

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(count)))


def worker_main(client: str, url: str, count: int, concurrency: int) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    if client == "aiohttp":
        asyncio.run(_aiohttp(url, count, concurrency))
    elif client == "httpx":
        asyncio.run(_httpx(url, count, concurrency))
    else:
        _requests_threads(url, count, concurrency)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"client": client, "requests": count, "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3)}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker, args.url, args.requests, args.concurrency)
        return
    sys.path.insert(0, str(REPO))
    from mistral_emulator.server import EmulatorProcess
    from mistral_emulator.settings import EmulatorSettings

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    rows = []
    with EmulatorProcess(
        api_key=API_KEY, settings=EmulatorSettings(files=5, batch_jobs=2, agents=2, fine_tuning_jobs=2)
    ) as emulator:
        emulator.configure(latency_ms=args.latency_ms, latency_per_token_ms=0.0, rate_limit_rps=None)
        url = emulator.base_url + "/v1/chat/completions"
        for client in CLIENTS:
            done = subprocess.run(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--worker",
                    client,
                    "--url",
                    url,
                    "--requests",
                    str(args.requests),
                    "--concurrency",
                    str(args.concurrency),
                ],
                capture_output=True,
                text=True,
                env=env,
                timeout=600,
            )
            if done.returncode != 0:
                print(f"  ! {client} failed: {done.stderr[-800:]}", file=sys.stderr)
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row["cpu_ms_per_request"] = round(1000 * row["cpu_seconds"] / row["requests"], 3)
            row["requests_per_s"] = round(row["requests"] / row["seconds"], 1)
            rows.append(row)
            emulator.reset_stats()
    print(
        f"\nHTTP clients: {args.requests} chat requests, concurrency {args.concurrency}, emulator latency "
        f"{args.latency_ms:.0f} ms, {os.cpu_count()} cores"
    )
    print(f"{'client':<18} {'requests/s':>11} {'client CPU ms/request':>22}")
    for row in rows:
        print(f"{row['client']:<18} {row['requests_per_s']:>11.1f} {row['cpu_ms_per_request']:>22.3f}")
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "http_clients.json").write_text(
        json.dumps({"concurrency": args.concurrency, "latency_ms": args.latency_ms, "rows": rows}, indent=2)
    )
    print(f"results kept in {args.output}/http_clients.json")


if __name__ == "__main__":
    main()
