"""destination-mistral throughput benchmark: `python tools/bench_destination.py [--quick]`.

Starts the emulator (a separate process) with a latency model (fixed + per token) and an optional
rate limit, then runs each contender as its own process against it and measures wall time, requests,
429s and peak RSS:
- destination-mistral, stdin to DuckDB, embeddings and chat (and a second run over the same input,
  answered by its cache);
- baselines written the way example code writes them (the official `mistralai` SDK): one request per
  record, sequential; sequential batches of 50 and of 100;
- peers: LangChain's MistralAIEmbeddings (`embed_documents`, `aembed_documents`) and
  `ChatMistralAI.batch(max_concurrency=C)`;
- the ceilings: B·min(C/L, R) records/s for embeddings, min(C/L, R) for chat, and what the emulator
  itself serves on this machine to a plain client that only fires the same requests.
Slow contenders run on a sample and their records/s is extrapolated (marked in the table).
Then, under rate limits (`--rate-limits-only` runs this section alone): tokens per minute in a smooth
bucket, tokens per minute in fixed windows, and requests per second, each set so that a run at the limit
takes ~30 s, for destination-mistral and LangChain, in embeddings (20,000 records) and chat (2,000):
records/s against the ceiling the limit allows, requests, 429s and records that ended in an error.
Results: bench-results/destination.json, destination.md and destination.png, and the rate-limit section
alone in destination-rate-limits.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench-results"
API_KEY = "bench-key-0123456789"
EMBED_MODEL = "mistral-embed"
CHAT_MODEL = "mistral-small-latest"
CHAT_PROMPT = "Classify the sentiment of this review in one word: "
CHAT_MAX_TOKENS = 16
# Observed per-request limits of /v1/embeddings (NOTES §6), as the emulator enforces them.
SERVER_MAX_TOKENS = 16_384
SERVER_MAX_INPUTS = 512

_WORDS = (
    "battery screen sound shipping case price value colour weight charger cable strap button menu "
    "light speaker camera focus noise signal update manual warranty refund support delivery box "
    "quality comfort grip lens zoom storage memory display keyboard mouse fan heat"
).split()
_ADJ = "great poor fine slow fast bright dull loud quiet cheap solid flimsy sturdy sharp soft".split()


def review_text(i: int) -> str:
    """About 50 tokens (as the emulator counts), distinct for every i."""
    parts = [f"Review {i} of item {i % 997}:"]
    for k in range(6):
        parts.append(
            f"the {_WORDS[(i * 7 + k * 11 + k * k) % len(_WORDS)]} is {_ADJ[(i * 3 + k * 4 + i // 15) % len(_ADJ)]},"
        )
    parts.append(f"rated {i % 5 + 1} of 5.")
    return " ".join(parts)


def texts(start: int, count: int) -> list[str]:
    return [review_text(i) for i in range(start, start + count)]


def airbyte_lines(start: int, count: int, state_every: int = 1000) -> Iterator[bytes]:
    import orjson

    for n, i in enumerate(range(start, start + count), 1):
        yield (
            orjson.dumps(
                {
                    "type": "RECORD",
                    "record": {
                        "stream": "reviews",
                        "emitted_at": 1_700_000_000_000,
                        "data": {"id": i, "product": f"p{i % 97}", "review": review_text(i)},
                    },
                }
            )
            + b"\n"
        )
        if n % state_every == 0 or n == count:
            yield (
                orjson.dumps(
                    {
                        "type": "STATE",
                        "state": {
                            "type": "STREAM",
                            "stream": {"stream_descriptor": {"name": "reviews"}, "stream_state": {"position": i}},
                        },
                    }
                )
                + b"\n"
            )


def embed_batches(items: list[str]) -> list[list[str]]:
    """Greedy packing under the server's own limits (its token count): the best a client can do."""
    from destination_mistral.enrich.batching import plan_batches
    from mistral_emulator.tokens import count_embedding_tokens

    plan = plan_batches(
        [count_embedding_tokens(EMBED_MODEL, text) for text in items],
        max_inputs=SERVER_MAX_INPUTS,
        max_tokens=SERVER_MAX_TOKENS,
    )
    return [[items[i] for i in batch] for batch in plan]


# ---- workers: each runs in its own process ---------------------------------------------------------


async def _plain(base: str, kind: str, start: int, count: int, concurrency: int) -> float:
    """Fires the requests with nothing else to do; returns the seconds from the first request to the
    last answer (the server's own rate, start-up excluded)."""
    import aiohttp
    import orjson

    if kind == "embeddings":
        bodies = [
            orjson.dumps({"model": EMBED_MODEL, "input": b, "encoding_format": "base64"})
            for b in embed_batches(texts(start, count))
        ]
        url = base + "/v1/embeddings"
    else:
        bodies = [
            orjson.dumps(
                {
                    "model": CHAT_MODEL,
                    "max_tokens": CHAT_MAX_TOKENS,
                    "temperature": 0,
                    "messages": [{"role": "user", "content": CHAT_PROMPT + t}],
                }
            )
            for t in texts(start, count)
        ]
        url = base + "/v1/chat/completions"
    queue = list(reversed(bodies))
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), headers=headers) as session:

        async def worker() -> None:
            while queue:
                body = queue.pop()
                while True:
                    async with session.post(url, data=body) as response:
                        payload = await response.read()
                        if response.status == 429:
                            await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                            continue
                        orjson.loads(payload)
                        break

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


def _sdk_client(base: str):
    from mistralai.client import Mistral

    return Mistral(api_key=API_KEY, server_url=base)


def worker_main(args: argparse.Namespace) -> None:
    base, kind, start, count = args.base_url, args.kind, args.start, args.count
    if kind in ("plain-embeddings", "plain-chat"):
        seconds = asyncio.run(_plain(base, kind.split("-", 1)[1], start, count, args.concurrency))
        print(json.dumps({"note": f"requests alone: {count / seconds:.0f} records/s"}))
    elif kind.startswith("sdk-embed-"):
        size = int(kind.rsplit("-", 1)[1])
        client = _sdk_client(base)
        items, vectors = texts(start, count), []
        for i in range(0, len(items), size):
            response = client.embeddings.create(model=EMBED_MODEL, inputs=items[i : i + size])
            vectors.extend(d.embedding for d in response.data)
        assert len(vectors) == count
    elif kind == "sdk-chat-1":
        client = _sdk_client(base)
        answers = [
            client.chat.complete(
                model=CHAT_MODEL,
                max_tokens=CHAT_MAX_TOKENS,
                temperature=0,
                messages=[{"role": "user", "content": CHAT_PROMPT + t}],
            )
            .choices[0]
            .message.content
            for t in texts(start, count)
        ]
        assert len(answers) == count
    elif kind in ("lc-embed", "lc-aembed"):
        import warnings

        from langchain_mistralai import MistralAIEmbeddings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = MistralAIEmbeddings(
                model=EMBED_MODEL, api_key=API_KEY, endpoint=base + "/v1/", max_retries=5, wait_time=1
            )
        fallback = type(model.tokenizer).__name__ == "DummyTokenizer"
        items = texts(start, count)
        note = "no HF tokenizer offline: batches by character count" if fallback else "HF tokenizer"
        try:
            vectors = model.embed_documents(items) if kind == "lc-embed" else asyncio.run(model.aembed_documents(items))
        except Exception as exc:  # all or nothing: one failed batch loses every vector
            print(json.dumps({"note": f"{note}; raised {type(exc).__name__}", "errors": count}))
            return
        assert len(vectors) == count
        print(json.dumps({"note": note, "warnings": len(caught), "errors": 0}))
    elif kind == "lc-chat-batch":
        from langchain_mistralai import ChatMistralAI

        model = ChatMistralAI(
            model=CHAT_MODEL,
            api_key=API_KEY,
            endpoint=base + "/v1",
            max_tokens=CHAT_MAX_TOKENS,
            temperature=0,
            max_retries=5,
        )
        answers = model.batch(
            [CHAT_PROMPT + t for t in texts(start, count)],
            config={"max_concurrency": args.concurrency},
            return_exceptions=True,
        )
        assert len(answers) == count
        failed = [a for a in answers if isinstance(a, BaseException)]
        kinds = sorted({type(a).__name__ for a in failed})
        print(json.dumps({"note": f"raised {', '.join(kinds)}" if failed else "", "errors": len(failed)}))
    else:
        raise SystemExit(f"unknown worker {kind}")


# ---- the harness -------------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    return env


def run_process(
    cmd: list[str],
    stdin_lines: Iterator[bytes] | None = None,
    stdin_path: Path | None = None,
    timeout: float = 1200,
    kill_after: float | None = None,
) -> tuple[float, float, bytes, int]:
    """(seconds, peak RSS MB, stdout, exit code) of one whole process. `kill_after` seconds: a contender
    that a rate limit has stalled is killed (exit code -9) rather than holding the benchmark forever."""
    started = time.perf_counter()
    stdin = (
        open(stdin_path, "rb") if stdin_path else (subprocess.PIPE if stdin_lines is not None else subprocess.DEVNULL)
    )
    process = subprocess.Popen(
        cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=str(REPO)
    )
    killer = threading.Timer(kill_after, process.kill) if kill_after else None
    if killer is not None:
        killer.daemon = True
        killer.start()
    if stdin_path:
        stdin.close()
    writer = None
    if stdin_lines is not None:

        def feed() -> None:
            try:
                buffer = []
                for line in stdin_lines:
                    buffer.append(line)
                    if len(buffer) >= 256:
                        process.stdin.write(b"".join(buffer))
                        buffer = []
                process.stdin.write(b"".join(buffer))
                process.stdin.close()
            except (BrokenPipeError, OSError):
                pass

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
    out_chunks: list[bytes] = []
    err_chunks: list[bytes] = []
    readers = [
        threading.Thread(target=lambda: out_chunks.append(process.stdout.read()), daemon=True),
        threading.Thread(target=lambda: err_chunks.append(process.stderr.read()), daemon=True),
    ]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if killer is not None:
        killer.cancel()
    for r in readers:
        r.join(timeout)
    if writer is not None:
        writer.join(5)
    process.returncode = os.waitstatus_to_exitcode(status)
    out = b"".join(out_chunks)
    if process.returncode != 0:
        tail = (b"".join(err_chunks)[-1500:] or out[-1500:]).decode(errors="replace")
        print(f"  ! {' '.join(cmd[1:4])} exited {process.returncode}: {tail}", file=sys.stderr)
    return elapsed, usage.ru_maxrss / 1024, out, process.returncode


class Bench:
    def __init__(self, args: argparse.Namespace, emulator) -> None:
        self.args = args
        self.emulator = emulator
        self.rows: list[dict[str, Any]] = []
        # Removed when the run ends, however it ends: a run writes hundreds of MB here.
        self._work_dir = tempfile.TemporaryDirectory(prefix="bench-destination-")
        self.work = Path(self._work_dir.name)
        self.next_start = 0
        self.last_report: dict[str, Any] = {}
        self.last_exit = 0
        self.rate_rows: list[dict[str, Any]] = []

    def fresh(self, count: int) -> int:
        """A record id range no contender used before, so that no answer comes from a warm cache."""
        start = self.next_start
        self.next_start += count + 1000
        return start

    def configure(self, latency_ms: float, per_token_ms: float, rate: float | None) -> None:
        self.emulator.configure(latency_ms=latency_ms, latency_per_token_ms=per_token_ms, rate_limit_rps=rate)

    def api_counts(self) -> tuple[int, int, dict]:
        stats = self.emulator.stats()
        requests = throttled = 0
        for route, counts in stats["routes"].items():
            if route.startswith("POST /v1/"):
                requests += sum(counts.values())
                throttled += counts.get("429", 0)
        return requests, throttled, stats

    def add(
        self,
        scenario: str,
        contender: str,
        records: int,
        seconds: float,
        rss: float | None,
        ceiling: float,
        note: str = "",
        sync_rate: float | None = None,
        extrapolated: bool = False,
    ) -> dict:
        requests, throttled, stats = self.api_counts()
        rate = records / seconds if seconds > 0 else 0.0
        row = {
            "scenario": scenario,
            "contender": contender,
            "records": records,
            "seconds": round(seconds, 2),
            "records_per_s": round(rate, 1),
            "sync_records_per_s": round(sync_rate, 1) if sync_rate else None,
            "pct_of_ceiling": round(100 * rate / ceiling, 1) if ceiling else None,
            "sync_pct_of_ceiling": round(100 * sync_rate / ceiling, 1) if ceiling and sync_rate else None,
            "requests": requests,
            "http_429": throttled,
            "peak_rss_mb": round(rss, 1) if rss else None,
            "extrapolated": extrapolated,
            "note": note,
            "server_tokens": stats["tokens"]["total"],
            "embedding_inputs": stats["embeddings"]["inputs"],
        }
        self.rows.append(row)
        sync = f", in-sync {row['sync_records_per_s']}/s" if sync_rate else ""
        print(
            f"  {scenario:<34} {contender:<42} {row['records_per_s']:>9.1f} rec/s{sync} "
            f"({requests} req, {throttled} 429s, {row['peak_rss_mb']} MB)",
            flush=True,
        )
        self.emulator.reset_stats()
        return row

    # -- contenders --

    def destination(
        self,
        mode: str,
        count: int,
        concurrency: int,
        start: int | None = None,
        database: Path | None = None,
        cache: bool = True,
        rate_cap: float | None = None,
        lazy: bool = False,
        extra_limits: dict[str, Any] | None = None,
        kill_after: float | None = None,
    ) -> tuple[float, float, float | None, int]:
        start = self.fresh(count) if start is None else start
        database = database or self.work / f"dest_{mode}_{start}.duckdb"
        enrichment = (
            {
                "mode": "chat",
                "model": CHAT_MODEL,
                "prompt_template": CHAT_PROMPT + "{{ review }}",
                "temperature": 0,
                "max_tokens": CHAT_MAX_TOKENS,
            }
            if mode == "chat"
            else {"mode": "embeddings", "model": EMBED_MODEL, "fields": ["review"]}
        )
        limits: dict[str, Any] = {"max_concurrent_requests": concurrency, "max_retries": 8}
        if rate_cap:
            limits["requests_per_second"] = rate_cap
        limits.update(extra_limits or {})
        config = {
            "api_key": API_KEY,
            "base_url": self.emulator.base_url,
            "enrichment": enrichment,
            "output": {"type": "duckdb", "path": str(database)},
            "limits": limits,
            "cache": {"enabled": cache},
        }
        config_path = self.work / f"config_{mode}_{start}.json"
        config_path.write_text(json.dumps(config))
        catalog_path = self.work / "catalog.json"
        if not catalog_path.exists():
            from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer

            from tests.support.builders import catalog, configured_stream

            schema = {
                "type": "object",
                "properties": {"id": {"type": "integer"}, "product": {"type": "string"}, "review": {"type": "string"}},
            }
            catalog_path.write_text(
                json.dumps(
                    ConfiguredAirbyteCatalogSerializer.dump(catalog(configured_stream(mode="append", schema=schema)))
                )
            )
        cmd = [
            sys.executable,
            "-m",
            "destination_mistral",
            "write",
            "--config",
            str(config_path),
            "--catalog",
            str(catalog_path),
        ]
        if lazy:
            seconds, rss, out, code = run_process(cmd, stdin_lines=airbyte_lines(start, count))
        else:
            input_path = self.work / f"input_{start}_{count}.jsonl"
            if not input_path.exists():
                with open(input_path, "wb") as handle:
                    handle.writelines(airbyte_lines(start, count))
            seconds, rss, out, code = run_process(cmd, stdin_path=input_path, kill_after=kill_after)
        self.last_exit = code
        match = re.search(rb"summary: (\d+) records committed in ([0-9.]+) s", out)
        sync_rate = int(match.group(1)) / float(match.group(2)) if match and float(match.group(2)) > 0 else None
        committed = int(match.group(1)) if match else 0
        if code != 0 or committed != count:
            print(f"  ! destination committed {committed} of {count} records (exit {code})", file=sys.stderr)
        return seconds, rss, sync_rate, start

    def worker(
        self, kind: str, count: int, concurrency: int = 1, kill_after: float | None = None
    ) -> tuple[float, float, str]:
        start = self.fresh(count)
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            kind,
            "--base-url",
            self.emulator.base_url,
            "--start",
            str(start),
            "--count",
            str(count),
            "--concurrency",
            str(concurrency),
        ]
        seconds, rss, out, code = run_process(cmd, kill_after=kill_after)
        note = ""
        # The worker's own report (its last JSON line): a note, and how many records ended in an error.
        self.last_report: dict[str, Any] = {}
        self.last_exit = code
        for line in out.splitlines():
            if line.startswith(b"{"):
                self.last_report = json.loads(line)
                note = self.last_report.get("note", "")
        if code != 0:
            note = (note + "; " if note else "") + f"failed (exit {code})"
        return seconds, rss, note


def embeddings_batch_size(sample: int = 2000) -> float:
    batches = embed_batches(texts(10_000_000, sample))
    return sum(len(b) for b in batches[:-1]) / max(1, len(batches) - 1)


def run(args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    from mistral_emulator.server import EmulatorProcess
    from mistral_emulator.settings import EmulatorSettings

    q = args.quick
    n_embed = args.records or (4000 if q else 20_000)
    n_chat = 600 if q else 3200
    n_chat_rate = 300 if q else 1600
    c_embed, c_chat = args.concurrency, 32
    per_token = args.latency_per_token_ms
    from mistral_emulator.tokens import count_embedding_tokens

    tokens_per_record = sum(count_embedding_tokens(EMBED_MODEL, t) for t in texts(0, 500)) / 500
    batch = embeddings_batch_size()
    print(
        f"records of {tokens_per_record:.1f} tokens (emulator count); B = {batch:.0f} inputs per embeddings request",
        flush=True,
    )
    settings = EmulatorSettings(files=10, batch_jobs=5, agents=5, fine_tuning_jobs=5)
    with EmulatorProcess(api_key=API_KEY, settings=settings) as emulator:
        bench = Bench(args, emulator)

        if not args.rate_limits_only:
            # -- embeddings, no rate limit --
            scenario = f"embeddings L={args.latency_ms:.0f}ms C={c_embed}"
            bench.configure(args.latency_ms, per_token, None)
            latency = (args.latency_ms + per_token * batch * tokens_per_record) / 1000
            formula = batch * c_embed / latency
            seconds, rss, note = bench.worker("plain-embeddings", n_embed, c_embed)
            plain = bench.add(
                scenario,
                "emulator max (plain aiohttp client)",
                n_embed,
                seconds,
                rss,
                formula,
                note=f"formula B·C/L = {formula:.0f}/s; {note}",
            )
            ceiling = plain["records_per_s"]
            start = bench.fresh(n_embed)
            database = bench.work / "dest_embeddings_main.duckdb"
            seconds, rss, sync, _ = bench.destination("embeddings", n_embed, c_embed, start=start, database=database)
            bench.add(scenario, "destination-mistral (stdin→DuckDB)", n_embed, seconds, rss, ceiling, sync_rate=sync)
            seconds, rss, sync, _ = bench.destination("embeddings", n_embed, c_embed, start=start, database=database)
            bench.add(scenario, "destination-mistral, 2nd run (cache)", n_embed, seconds, rss, ceiling, sync_rate=sync)
            lc_n = n_embed
            seconds, rss, note = bench.worker("lc-aembed", lc_n)
            bench.add(scenario, "LangChain aembed_documents", lc_n, seconds, rss, ceiling, note=note)
            seconds, rss, note = bench.worker("lc-embed", lc_n // (2 if not q else 1))
            bench.add(
                scenario,
                "LangChain embed_documents",
                lc_n // (2 if not q else 1),
                seconds,
                rss,
                ceiling,
                note=note,
                extrapolated=not q,
            )
            for size, count in ((100, 6000 if not q else 1500), (50, 3000 if not q else 800)):
                seconds, rss, _ = bench.worker(f"sdk-embed-{size}", count)
                bench.add(
                    scenario,
                    f"baseline: sequential batches of {size} (SDK)",
                    count,
                    seconds,
                    rss,
                    ceiling,
                    extrapolated=True,
                )
            count = 60 if not q else 20
            seconds, rss, _ = bench.worker("sdk-embed-1", count)
            bench.add(
                scenario, "baseline: one request per record (SDK)", count, seconds, rss, ceiling, extrapolated=True
            )

            # -- embeddings, R requests/s --
            rate = args.embed_rate
            scenario = f"embeddings L={args.latency_ms:.0f}ms R={rate:g}/s"
            bench.configure(args.latency_ms, per_token, rate)
            ceiling = batch * min(c_embed / latency, rate)
            seconds, rss, sync, _ = bench.destination("embeddings", n_embed, c_embed)
            bench.add(
                scenario,
                "destination-mistral (limit learned)",
                n_embed,
                seconds,
                rss,
                ceiling,
                sync_rate=sync,
                note=f"ceiling R·B = {ceiling:.0f}/s",
            )

            # -- chat --
            chat_latency = (args.chat_latency_ms + per_token * (tokens_per_record + 10 + CHAT_MAX_TOKENS)) / 1000
            scenario = f"chat L={args.chat_latency_ms:.0f}ms C={c_chat}"
            bench.configure(args.chat_latency_ms, per_token, None)
            ceiling = c_chat / chat_latency
            seconds, rss, note = bench.worker("plain-chat", n_chat // 2, c_chat)
            bench.add(
                scenario,
                "emulator max (plain aiohttp client)",
                n_chat // 2,
                seconds,
                rss,
                ceiling,
                note=f"formula C/L = {ceiling:.1f}/s; {note}",
            )
            seconds, rss, sync, _ = bench.destination("chat", n_chat, c_chat)
            bench.add(scenario, "destination-mistral (stdin→DuckDB)", n_chat, seconds, rss, ceiling, sync_rate=sync)
            seconds, rss, note = bench.worker("lc-chat-batch", n_chat // 2, c_chat)
            bench.add(
                scenario,
                f"LangChain ChatMistralAI.batch(max_concurrency={c_chat})",
                n_chat // 2,
                seconds,
                rss,
                ceiling,
                note=note,
            )
            count = 24 if not q else 8
            seconds, rss, _ = bench.worker("sdk-chat-1", count)
            bench.add(
                scenario, "baseline: one request per record (SDK)", count, seconds, rss, ceiling, extrapolated=True
            )

            rate = args.chat_rate
            scenario = f"chat L={args.chat_latency_ms:.0f}ms C={c_chat} R={rate:g}/s"
            bench.configure(args.chat_latency_ms, per_token, rate)
            ceiling = min(c_chat / chat_latency, rate)
            seconds, rss, sync, _ = bench.destination("chat", n_chat_rate, c_chat)
            bench.add(
                scenario,
                "destination-mistral (limit learned)",
                n_chat_rate,
                seconds,
                rss,
                ceiling,
                sync_rate=sync,
                note=f"ceiling min(C/L, R) = {ceiling:.1f}/s",
            )

            # -- memory: lazily generated input, cache off, no latency --
            bench.configure(0.0, 0.0, None)
            small, large = (5_000, 50_000) if q else (20_000, 200_000)
            for count in (small, large):
                seconds, rss, sync, _ = bench.destination("embeddings", count, c_embed, cache=False, lazy=True)
                bench.add(
                    "memory (embeddings, L=0, cache off)",
                    f"destination-mistral, {count:,} records",
                    count,
                    seconds,
                    rss,
                    0,
                    sync_rate=sync,
                )
        bench.rate_rows = rate_limit_section(bench, args, batch)
    return bench.rows, bench.rate_rows


# ---- rate limits ---------------------------------------------------------------------------------------

RATE_LIMIT_WINDOW_SECONDS = 3.0


def _nice(value: float) -> float:
    """Two significant figures, so the limits read as limits an account could have."""
    if value <= 0:
        return value
    digits = 10 ** (len(str(int(value))) - 2) if value >= 100 else 1
    return round(value / digits) * digits if value >= 100 else round(value, 1)


def destination_errors(database: Path) -> tuple[int, int]:
    """(rows, rows whose error column is not null) in the destination's output: every stream table that
    has the error column. A missing or unreadable file counts as no rows."""
    import duckdb

    from destination_mistral.sinks.schema import ERROR

    if not database.exists():
        return 0, 0
    rows = errors = 0
    try:
        with duckdb.connect(str(database), read_only=True) as db:
            tables = db.execute(
                "SELECT table_schema, table_name FROM information_schema.columns WHERE column_name = ?", [ERROR]
            ).fetchall()
            for schema, name in tables:
                total, failed = db.execute(f'SELECT count(*), count("{ERROR}") FROM "{schema}"."{name}"').fetchone()
                rows += total
                errors += failed
    except duckdb.Error as exc:
        print(f"  ! cannot read {database}: {exc}", file=sys.stderr)
    return rows, errors


def records_tokens(mode: str, start: int, count: int) -> int:
    """The prompt tokens of records start..start+count as the emulator counts them (what its meters charge)."""
    from mistral_emulator.inference import TOKENS_PER_MESSAGE
    from mistral_emulator.tokens import count_embedding_tokens, count_prompt_tokens

    if mode == "embeddings":
        return sum(count_embedding_tokens(EMBED_MODEL, t) for t in texts(start, count))
    return sum(count_prompt_tokens(CHAT_PROMPT + t) + TOKENS_PER_MESSAGE for t in texts(start, count))


def rate_limit_section(bench: Bench, args: argparse.Namespace, batch: float) -> list[dict]:
    """Each limit shape with its limit set so that a run at the ceiling takes about `target` seconds:
    tokens per minute smooth, tokens per minute in fixed windows, requests per second. The ceiling is
    what the limit allows in the long run (tokens per minute ÷ tokens per record, or requests per second ×
    records per request, with B for embeddings: the greedy packing under the server's per-request limits).
    The token meters hold RATE_LIMIT_WINDOW_SECONDS of the rate at once (the emulator's
    `tpm_window_seconds`), so a run sees about ten windows; a run can beat its ceiling by that head start.
    """
    q = args.quick
    target = 10.0 if q else 30.0
    n_embed = 4000 if q else 20_000
    n_chat = 400 if q else 2000
    c_embed, c_chat = args.concurrency, 64
    kill_after = max(120.0, 6 * target)
    tpr = {mode: records_tokens(mode, 0, 1000) / 1000 for mode in ("embeddings", "chat")}
    counts = {"embeddings": n_embed, "chat": n_chat}
    per_request = {"embeddings": batch, "chat": 1.0}
    latency = {"embeddings": args.latency_ms, "chat": args.chat_latency_ms}
    concurrency = {"embeddings": c_embed, "chat": c_chat}
    rows: list[dict] = []
    print(
        f"\nrate limits: runs of ~{target:.0f} s at the ceiling; "
        f"tokens per record: embeddings {tpr['embeddings']:.1f}, "
        f"chat {tpr['chat']:.1f} (prompt, as the emulator counts); B = {batch:.0f}",
        flush=True,
    )
    for shape in ("tpm-smooth", "tpm-fixed", "rps"):
        for mode in ("embeddings", "chat"):
            if args.only and f"{shape}:{mode}" not in args.only:
                continue
            n = counts[mode]
            knobs: dict[str, Any] = {
                "latency_ms": latency[mode],
                "latency_per_token_ms": args.latency_per_token_ms,
                "rate_limit_rps": None,
                "tokens_per_minute": None,
                "tokens_per_month": None,
                "tpm_shape": "smooth",
                "tpm_window_seconds": RATE_LIMIT_WINDOW_SECONDS,
            }
            if shape == "rps":
                rps = _nice(n / per_request[mode] / target)
                knobs["rate_limit_rps"] = rps
                ceiling = rps * per_request[mode]
                limit_text = f"{rps:g} requests/s"
                formula = f"{rps:g} req/s × {per_request[mode]:.0f} records/req"
                destination_limits = {"requests_per_second": rps}
            else:
                tpm = _nice(n * tpr[mode] * 60 / target)
                knobs.update(tokens_per_minute=tpm, tpm_shape=shape.split("-")[1])
                ceiling = tpm / 60 / tpr[mode]
                limit_text = f"{tpm:,.0f} tokens/min, {knobs['tpm_shape']} ({RATE_LIMIT_WINDOW_SECONDS:g} s at once)"
                formula = f"{tpm:,.0f} / 60 / {tpr[mode]:.1f} tokens per record"
                destination_limits = {"tokens_per_minute": int(tpm)}
            no_limit_ceiling = (
                concurrency[mode]
                / ((latency[mode] + args.latency_per_token_ms * tpr[mode] * per_request[mode]) / 1000)
                * per_request[mode]
            )
            scenario = f"{mode}: {limit_text}"
            contenders = [
                (
                    "destination-mistral" + (" (limits learned)" if args.learn_limits else " (limits in config)"),
                    "destination",
                )
            ]
            contenders.append(
                ("LangChain aembed_documents", "lc-aembed")
                if mode == "embeddings"
                else (f"LangChain ChatMistralAI.batch(max_concurrency={c_chat})", "lc-chat-batch")
            )
            for contender, kind in contenders:
                bench.emulator.configure(**knobs)  # fresh meters: every run starts from a full bucket or window
                bench.emulator.reset_stats()
                # The ceiling of a token limit is for the records this run sends: ids grow from run to
                # run, and a longer id is a token more per record than the sample the limit was set from.
                start = bench.next_start
                if shape != "rps":
                    run_tpr = records_tokens(mode, start, n) / n
                    ceiling = tpm / 60 / run_tpr
                    formula = f"{tpm:,.0f} / 60 / {run_tpr:.1f} tokens per record"
                if kind == "destination":
                    start = bench.fresh(n)
                    database = bench.work / f"rate_{shape}_{mode}.duckdb"
                    seconds, rss, sync, _ = bench.destination(
                        mode,
                        n,
                        concurrency[mode],
                        start=start,
                        database=database,
                        cache=False,
                        extra_limits=None if args.learn_limits else destination_limits,
                        kill_after=kill_after,
                    )
                    written, errors = destination_errors(database)
                    missing = n - written
                    note = "" if bench.last_exit == 0 else f"exit {bench.last_exit}"
                    if missing:
                        note = (note + "; " if note else "") + f"{missing} records not written"
                else:
                    seconds, rss, note = bench.worker(kind, n, concurrency[mode], kill_after=kill_after)
                    errors = bench.last_report.get("errors", n if bench.last_exit != 0 else 0)
                    sync = None
                    missing = 0 if bench.last_report else n
                if bench.last_exit == -9:
                    note = (note + "; " if note else "") + f"killed after {kill_after:.0f} s"
                requests, throttled, stats = bench.api_counts()
                by_cause = stats.get("rate_limited_by", {})
                # Only records that came out with a result count: a run that loses records is not fast.
                delivered = max(0, n - errors - missing)
                rate = delivered / seconds if seconds > 0 else 0.0
                row = {
                    "section": "rate limits",
                    "scenario": scenario,
                    "limit": shape,
                    "mode": mode,
                    "contender": contender,
                    "records": n,
                    "records_with_result": delivered,
                    "seconds": round(seconds, 2),
                    "records_per_s": round(rate, 1),
                    "sync_records_per_s": round(sync, 1) if sync else None,
                    "ceiling_records_per_s": round(ceiling, 1),
                    "ceiling_formula": formula,
                    "ceiling_without_limit": round(no_limit_ceiling, 1),
                    "ratio": round(rate / ceiling, 3) if ceiling else None,
                    "requests": requests,
                    "http_429": throttled,
                    "rate_limited_by": by_cause,
                    "records_with_error": errors,
                    "peak_rss_mb": round(rss, 1) if rss else None,
                    "note": note,
                    "server_tokens": stats["tokens"]["total"],
                }
                batches = stats.get("embedding_batches") or []
                if batches:
                    row["inputs_per_request"] = {
                        "mean": round(sum(batches) / len(batches), 1),
                        "max": max(batches),
                        "under_half_of_max": sum(b < max(batches) / 2 for b in batches),
                        "sequence": batches,
                    }
                rows.append(row)
                print(
                    f"  {scenario:<52} {contender:<44} {rate:>8.1f} rec/s of {ceiling:>7.1f} "
                    f"({100 * rate / ceiling:5.1f}%) "
                    f"{requests} req, {throttled} 429s, {errors} errors{'; ' + note if note else ''}",
                    flush=True,
                )
    bench.emulator.configure(rate_limit_rps=None, tokens_per_minute=None, tokens_per_month=None)
    return rows


def rate_limit_table(rows: list[dict]) -> str:
    head = (
        "| limit | contender | records | seconds | records/s | ceiling records/s | ratio | requests | 429s | "
        "records with error | note |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {r['contender']} | {r['records']} | {r['seconds']:.1f} | {r['records_per_s']:.1f} | "
            f"{r['ceiling_records_per_s']:.1f} ({r['ceiling_formula']}) | {100 * r['ratio']:.0f}% | {r['requests']} | "
            f"{r['http_429']} | {r['records_with_error']} | {r['note']} |"
        )
    lines.append("")
    lines.append(
        "records/s: records that came out with a result, over the whole process, start to exit. "
        "Ceiling: what the limit allows in the long run "
        "(tokens per minute ÷ tokens per record as the emulator counts them; requests per second × records per "
        "request, B for embeddings being the greedy packing under the server's per-request limits). The token "
        f"meters hold {RATE_LIMIT_WINDOW_SECONDS:g} s of the rate at once, so a run may beat its ceiling by that "
        "head start. 429s and requests from the emulator's /admin/stats; records with error: rows whose "
        "`_mistral_error` is not null (destination), or records the call lost (LangChain: a raised "
        "`aembed_documents` loses every vector; `batch(return_exceptions=True)` counts per record)."
    )
    return "\n".join(lines)


# ---- reporting ----------------------------------------------------------------------------------------


def table(rows: list[dict]) -> str:
    head = (
        "| scenario | contender | records | records/s | % of ceiling | in-sync records/s (% ceiling) "
        "| requests | 429s | peak RSS MB | note |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        rate = f"{r['records_per_s']:.1f}" + (" *" if r["extrapolated"] else "")
        pct = f"{r['pct_of_ceiling']:.1f}%" if r["pct_of_ceiling"] is not None else ""
        sync = (
            f"{r['sync_records_per_s']:.1f} ({r['sync_pct_of_ceiling']:.1f}%)"
            if r.get("sync_pct_of_ceiling")
            else (f"{r['sync_records_per_s']:.1f}" if r.get("sync_records_per_s") else "")
        )
        lines.append(
            f"| {r['scenario']} | {r['contender']} | {r['records']} | {rate} | {pct} | {sync} | {r['requests']} | "
            f"{r['http_429']} | {r['peak_rss_mb'] if r['peak_rss_mb'] is not None else ''} | {r['note']} |"
        )
    lines.append("")
    lines.append(
        "`*` measured on a sample of the records and extrapolated (records/s is the sample's rate). "
        "records/s counts the whole process (start-up included); in-sync is the destination's own rate from its "
        "first record read to its last commit. % of ceiling: of the emulator's measured maximum for embeddings "
        "without a limit, else of the formula B·min(C/L, R) or min(C/L, R)."
    )
    return "\n".join(lines)


def chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = [s for s in dict.fromkeys(r["scenario"] for r in rows) if not s.startswith("memory")]
    fig, axes = plt.subplots(
        len(scenarios),
        1,
        figsize=(11, 2.0 + 0.55 * len(rows)),
        gridspec_kw={"height_ratios": [max(1, sum(r["scenario"] == s for r in rows)) for s in scenarios]},
    )
    for ax, scenario in zip(axes, scenarios, strict=False):
        group = [r for r in rows if r["scenario"] == scenario]
        names = [r["contender"] + (" *" if r["extrapolated"] else "") for r in group]
        values = [max(r["records_per_s"], 0.1) for r in group]
        colours = [
            "#f28e2b"
            if r["contender"].startswith("destination")
            else "#bab0ac"
            if r["contender"].startswith("emulator")
            else "#4e79a7"
            for r in group
        ]
        bars = ax.barh(names, values, color=colours)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_title(scenario, fontsize=10, loc="left")
        for bar, value in zip(bars, values, strict=False):
            ax.text(
                value * 1.05,
                bar.get_y() + bar.get_height() / 2,
                f"{value:,.0f}" if value >= 10 else f"{value:.1f}",
                va="center",
                fontsize=8,
            )
        ax.set_xlim(min(values) / 2, max(values) * 4)
        ax.tick_params(axis="y", labelsize=8)
    axes[-1].set_xlabel("records/s (log scale; * = extrapolated from a sample)")
    fig.suptitle("destination-mistral vs peers against the Mistral emulator", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller samples (~3 minutes)")
    parser.add_argument("--records", type=int, help="embeddings records (default 20,000; 4,000 with --quick)")
    parser.add_argument("--concurrency", type=int, default=64, help="C for embeddings")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="fixed latency L for embeddings")
    parser.add_argument("--chat-latency-ms", type=float, default=400.0)
    parser.add_argument("--latency-per-token-ms", type=float, default=0.001)
    parser.add_argument("--embed-rate", type=float, default=10.0)
    parser.add_argument("--chat-rate", type=float, default=20.0)
    parser.add_argument(
        "--rate-limits-only",
        action="store_true",
        help="only the rate-limit section (results in destination-rate-limits.md/.json)",
    )
    parser.add_argument(
        "--learn-limits",
        action="store_true",
        help="rate-limit section: do not put the limits in the destination's config (learned from headers)",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="SHAPE:MODE",
        help="rate-limit section: only this run (tpm-smooth, tpm-fixed or rps : embeddings or chat); repeatable",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.kind = args.worker
        worker_main(args)
        return
    sys.path.insert(0, str(REPO))
    started = time.monotonic()
    rows, rate_rows = run(args)
    args.output.mkdir(parents=True, exist_ok=True)
    meta = {
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "quick": args.quick,
        "latency_ms": args.latency_ms,
        "chat_latency_ms": args.chat_latency_ms,
        "latency_per_token_ms": args.latency_per_token_ms,
        "seconds": round(time.monotonic() - started, 1),
        "destination_commit": _destination_commit(),
    }
    rate_text = rate_limit_table(rate_rows)
    (args.output / "destination-rate-limits.json").write_text(json.dumps({"meta": meta, "rows": rate_rows}, indent=2))
    (args.output / "destination-rate-limits.md").write_text(
        f"# destination-mistral under rate limits\n\n{json.dumps(meta)}\n\n{rate_text}\n"
    )
    if not args.rate_limits_only:
        (args.output / "destination.json").write_text(
            json.dumps({"meta": meta, "rows": rows, "rate_limit_rows": rate_rows}, indent=2)
        )
        text = table(rows)
        (args.output / "destination.md").write_text(
            f"# destination-mistral benchmark\n\n{json.dumps(meta)}\n\n{text}\n\n## Under rate limits\n\n{rate_text}\n"
        )
        chart(rows, args.output / "destination.png")
        print()
        print(text)
    print()
    print(rate_text)
    written = (
        "destination-rate-limits.json and .md"
        if args.rate_limits_only
        else "destination.json, .md, .png and destination-rate-limits.*"
    )
    print(f"\n{meta['seconds']} s; results in {args.output}/{written}")


def _destination_commit() -> str:
    """The last commit of destination_mistral/, marked when the working tree differs from it."""
    try:
        commit = subprocess.run(
            ["git", "log", "-1", "--format=%h", "--", "destination_mistral"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "destination_mistral"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return commit + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


if __name__ == "__main__":
    main()
