"""Chunked embeddings under a tokens-per-minute limit: `python tools/bench_chunking.py [--docs 500]`.

500 documents of about 4,000 tokens (the splitter benchmark's generator: paragraphs, markdown
headings, long runs without breaks, non-ASCII) go through `destination-mistral write` with
`chunking: {max_tokens: 512, overlap_tokens: 64}` into DuckDB, against the emulator (a separate
process) with the rate-limit benchmark's latency model and a smooth tokens-per-minute limit set so
that a run at the limit takes about 30 s. The limit is given in the config, as the rate-limit
benchmark's "limits in config" runs do.

Figures:
- records/s of the sync (the destination's own summary) against the ceiling the limit allows: the
  tokens per minute ÷ 60 ÷ the tokens of a document's chunks as the emulator counts them (the ceiling
  of tools/bench_destination.py's rate-limit section);
- the sync's CPU seconds (user + system of the destination process) and the splitting's share of
  them, twice: the same chunker on the same texts timed in this process (CPU time, from a cold
  memory of words), and the destination's own summary figures: the CPU its thread spent splitting
  (timed around each split in the sync, where the sync's other threads and the emulator share the
  cores), and preparing every input (reading the fields, splitting, keying the chunks);
- requests, 429s, chunks, records with errors, peak RSS.
The sync runs --runs times (3), each against a fresh emulator into a fresh output: the splitting's
share of a sync's CPU moves by a point or more from run to run with the host's load, so the figures
are the median run's (by that share), with every run's share beside them.
Results: bench-results/chunking.json and chunking.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tools.bench_destination import RATE_LIMIT_WINDOW_SECONDS, _env  # noqa: E402
from tools.bench_splitters import add_document_arguments, make_documents  # noqa: E402

RESULTS = REPO / "bench-results"
API_KEY = "bench-key-0123456789"
MODEL = "mistral-embed"


def _write_input(path: Path, docs: list[str]) -> None:
    with open(path, "w") as handle:
        for i, text in enumerate(docs):
            record = {"stream": "documents", "data": {"id": i, "title": f"document {i}", "body": text}, "emitted_at": 1}
            handle.write(json.dumps({"type": "RECORD", "record": record}) + "\n")
            if (i + 1) % 50 == 0:
                state = {
                    "type": "STREAM",
                    "stream": {"stream_descriptor": {"name": "documents"}, "stream_state": {"n": i}},
                }
                handle.write(json.dumps({"type": "STATE", "state": state}) + "\n")


def _catalog() -> dict:
    schema = {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "title": {"type": "string"}, "body": {"type": "string"}},
    }
    stream = {"name": "documents", "json_schema": schema, "supported_sync_modes": ["full_refresh"]}
    return {
        "streams": [
            {"stream": stream, "sync_mode": "full_refresh", "destination_sync_mode": "append", "primary_key": [["id"]]}
        ]
    }


def _run(cmd: list[str], stdin: Path) -> tuple[float, float, float, bytes, int]:
    """(wall seconds, CPU seconds, peak RSS MB, stdout, exit code) of the process."""
    started = time.perf_counter()
    with open(stdin, "rb") as source:
        process = subprocess.Popen(cmd, stdin=source, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env())
        out = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
    return (
        time.perf_counter() - started,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss / 1024,
        out,
        os.waitstatus_to_exitcode(status),
    )


def _sync(args, work: Path, input_path: Path, catalog_path: Path, tpm: float, ceiling: float) -> dict:
    """One sync of the input through the destination against a fresh emulator; its figures."""
    from mistral_emulator import EmulatorProcess, EmulatorSettings

    work.mkdir()
    config_path = work / "config.json"
    settings = EmulatorSettings(
        files=0,
        batch_jobs=0,
        agents=0,
        fine_tuning_jobs=0,
        latency_ms=args.latency_ms,
        latency_per_token_ms=args.latency_per_token_ms,
        tokens_per_minute=int(tpm),
        tpm_shape="smooth",
        tpm_window_seconds=RATE_LIMIT_WINDOW_SECONDS,
    )
    with EmulatorProcess(api_key=API_KEY, settings=settings) as emulator:
        config = {
            "api_key": API_KEY,
            "base_url": emulator.base_url,
            "enrichment": {
                "mode": "embeddings",
                "model": MODEL,
                "fields": ["body"],
                "chunking": {
                    "max_tokens": args.max_tokens,
                    "overlap_tokens": args.overlap_tokens,
                    "metadata_fields": ["title"],
                },
            },
            "output": {"type": "duckdb", "path": str(work / "out.duckdb")},
            "limits": {"tokens_per_minute": int(tpm)},
        }
        config_path.write_text(json.dumps(config))
        cmd = [sys.executable, "-m", "destination_mistral", "write", "--config", str(config_path)]
        cmd += ["--catalog", str(catalog_path)]
        wall, cpu, rss, out, code = _run(cmd, input_path)
        stats = emulator.stats()
    match = re.search(rb"summary: (\d+) records committed in ([0-9.]+) s", out)
    committed, seconds = (int(match.group(1)), float(match.group(2))) if match else (0, wall)
    rate = committed / seconds if seconds else 0.0
    # The destination's own figure: its CPU in preparing inputs, splitting included, timed per record.
    prepared = re.search(rb"inputs prepared \(read, counted, split into chunks\) in ([0-9.]+) CPU s", out)
    prepare_cpu = float(prepared.group(1)) if prepared else None
    split_in_sync = re.search(rb"\(splitting ([0-9.]+) CPU s\)", out)
    split_cpu_in_sync = float(split_in_sync.group(1)) if split_in_sync else None
    import duckdb

    con = duckdb.connect(str(work / "out.duckdb"), read_only=True)
    try:
        errors = con.execute("SELECT count(*) FROM documents WHERE _mistral_error IS NOT NULL").fetchone()[0]
        stored_chunks = con.execute("SELECT count(*) FROM documents_chunks").fetchone()[0]
    finally:
        con.close()
    (work / "out.duckdb").unlink()
    requests = sum(stats["routes"].get("POST /v1/embeddings", {}).values())
    return {
        "chunks_stored": stored_chunks,
        "records_committed": committed,
        "records_with_errors": errors,
        "exit_code": code,
        "tokens_per_minute": tpm,
        "ceiling_records_per_s": round(ceiling, 2),
        "records_per_s": round(rate, 2),
        "pct_of_ceiling": round(100 * rate / ceiling, 1),
        "sync_cpu_s": round(cpu, 2),
        "split_cpu_s_in_sync": split_cpu_in_sync,
        "split_in_sync_pct_of_sync_cpu": round(100 * split_cpu_in_sync / cpu, 1)
        if cpu and split_cpu_in_sync is not None
        else None,
        "prepare_cpu_s_in_sync": prepare_cpu,
        "prepare_pct_of_sync_cpu": round(100 * prepare_cpu / cpu, 1) if cpu and prepare_cpu is not None else None,
        "requests": requests,
        "rate_limited_429": stats.get("rate_limited", 0),
        "peak_rss_mb": round(rss),
        "wall_s": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_document_arguments(parser)
    parser.add_argument("--target-seconds", type=float, default=30.0, help="a run at the limit takes this long")
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--latency-per-token-ms", type=float, default=0.001)
    parser.add_argument("--runs", type=int, default=3, help="syncs run; the median one's figures are kept")
    args = parser.parse_args()

    from destination_mistral.enrich.chunking import Chunker
    from destination_mistral.enrich.tokens import tokenizer_for
    from mistral_emulator.tokens import count_embedding_tokens

    tokenizer = tokenizer_for(MODEL)
    docs = make_documents(args.docs, args.doc_tokens, tokenizer.count)
    chunker = Chunker.for_model(MODEL, args.max_tokens, args.overlap_tokens)
    started = time.process_time()
    chunks = [chunker.split(doc) for doc in docs]
    split_cpu = time.process_time() - started
    chunk_count = sum(len(c) for c in chunks)
    # What the limit meters: the emulator's count of every chunk sent.
    metered = sum(count_embedding_tokens(MODEL, chunk.text) for doc in chunks for chunk in doc)
    tpm = round(metered * 60 / args.target_seconds, -3)
    ceiling = tpm / 60 / (metered / args.docs)
    print(
        f"{args.docs} documents, {sum(tokenizer.count(d) for d in docs) / args.docs:,.0f} tokens each on average; "
        f"{chunk_count} chunks of at most {args.max_tokens} (overlap {args.overlap_tokens}); "
        f"splitting took {split_cpu:.2f} CPU s here",
        flush=True,
    )
    # Removed when the bench ends, however it ends: each sync writes about 330 MB here (removed once read).
    work_dir = tempfile.TemporaryDirectory(prefix="bench-chunking-")
    work = Path(work_dir.name)
    input_path, catalog_path = work / "input.jsonl", work / "catalog.json"
    _write_input(input_path, docs)
    catalog_path.write_text(json.dumps(_catalog()))
    runs = []
    for run in range(args.runs):
        runs.append(_sync(args, work / f"run{run}", input_path, catalog_path, tpm, ceiling))
        print(f"run {run + 1}: splitting {runs[-1]['split_in_sync_pct_of_sync_cpu']}% of the sync's CPU", flush=True)
    shares = [r["split_in_sync_pct_of_sync_cpu"] for r in runs]
    median = sorted(runs, key=lambda r: r["split_in_sync_pct_of_sync_cpu"] or 0)[len(runs) // 2]
    result = {
        "docs": args.docs,
        "chunks": chunk_count,
        **median,
        "split_cpu_s": round(split_cpu, 2),
        "split_pct_of_sync_cpu": round(100 * split_cpu / median["sync_cpu_s"], 1) if median["sync_cpu_s"] else None,
        "runs": args.runs,
        "split_in_sync_pct_of_sync_cpu_each_run": shares,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "chunking.json").write_text(json.dumps(result, indent=2) + "\n")
    table = "\n".join(f"| {k} | {v} |" for k, v in result.items())
    (RESULTS / "chunking.md").write_text(
        f"# Chunked embeddings under a token limit\n\n| figure | value |\n|---|---|\n{table}\n"
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
