"""Start-up benchmark of `destination-mistral write`: how long after the process starts the first STATE
comes back (the input holds only that STATE, so no request is sent), and how long until the process
has exited once its input ends. Each case runs as a fresh process, several times; the median and the
slowest run are printed and kept in bench-results/destination-startup.{md,json}.

Start-up matters because the platform starts the destination once per sync attempt, and everything the
destination does before reading its input (imports, config validation, opening the output, loading
tokenizers) delays the first STATE and so the first checkpoint of the whole sync."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RESULTS = REPO / "bench-results"
TARGET_SECONDS = 0.5

STATE_LINE = json.dumps(
    {
        "type": "STATE",
        "state": {"type": "STREAM", "stream": {"stream_descriptor": {"name": "reviews"}, "stream_state": {"at": 1}}},
    }
).encode()
CATALOG = {
    "streams": [
        {
            "stream": {
                "name": "reviews",
                "json_schema": {
                    "type": "object",
                    "properties": {"id": {"type": "integer"}, "review": {"type": "string"}},
                },
                "supported_sync_modes": ["incremental"],
            },
            "sync_mode": "incremental",
            "destination_sync_mode": "append_dedup",
            "primary_key": [["id"]],
        }
    ]
}
# No server listens here: a request would fail, and none is made because the input holds no record.
BASE_URL = "http://127.0.0.1:9"


def cases(work: Path) -> dict[str, dict]:
    chat = {"mode": "chat", "prompt_template": "Summarise: {{ review }}"}
    embeddings = {"mode": "embeddings", "model": "mistral-embed", "fields": ["review"]}
    duckdb_out = {"type": "duckdb", "path": str(work / "out.duckdb")}
    return {
        "chat to DuckDB": {"enrichment": chat, "output": duckdb_out},
        "embeddings to DuckDB": {"enrichment": embeddings, "output": duckdb_out},
        "embeddings to DuckDB, cache off (tokenizers load at start)": {
            "enrichment": embeddings,
            "output": duckdb_out,
            "cache": {"enabled": False},
        },
        "chat to JSONL": {"enrichment": chat, "output": {"type": "jsonl", "directory": str(work / "jsonl")}},
    }


def one_run(config_path: Path, catalog_path: Path) -> tuple[float, float]:
    """Seconds until the STATE is echoed, and until the process has exited after its input closed."""
    command = [str(BIN / "destination-mistral"), "write", "--config", str(config_path), "--catalog", str(catalog_path)]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdin.write(STATE_LINE + b"\n")
    process.stdin.flush()
    first_state = None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith(b'{"type":"STATE"'):
            first_state = time.perf_counter() - started
            process.stdin.close()
    status = process.wait()
    exited = time.perf_counter() - started
    if status != 0 or first_state is None:
        said = b"".join(seen[-3:]).decode(errors="replace") + process.stderr.read().decode(errors="replace")[-800:]
        raise SystemExit(f"write exited with status {status} (STATE seen: {first_state is not None}):\n{said}")
    return first_state, exited


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        catalog_path = work / "catalog.json"
        catalog_path.write_text(json.dumps(CATALOG))
        for name, settings in cases(work).items():
            config_path = work / "config.json"
            config_path.write_text(json.dumps({"api_key": "bench-key", "base_url": BASE_URL, **settings}))
            for leftover in ("out.duckdb", "out.duckdb.wal", "out.jsonl"):
                (work / leftover).unlink(missing_ok=True)
            one_run(config_path, catalog_path)  # creates the output: later runs open an existing one
            timings = [one_run(config_path, catalog_path) for _ in range(args.runs)]
            states = [t[0] for t in timings]
            exits = [t[1] for t in timings]
            rows.append(
                {
                    "case": name,
                    "runs": args.runs,
                    "first_state_median_s": round(statistics.median(states), 3),
                    "first_state_max_s": round(max(states), 3),
                    "exit_median_s": round(statistics.median(exits), 3),
                    "exit_max_s": round(max(exits), 3),
                }
            )
    load = os.getloadavg()[0]
    lines = [
        "# destination-mistral write: start-up",
        "",
        f"Each case: {args.runs} fresh processes after one that creates the output; load average {load:.1f}; "
        f"target: first STATE within {TARGET_SECONDS} s.",
        "",
        "| case | first STATE, median | first STATE, slowest | exit, median | exit, slowest | target met |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        met = "yes" if row["first_state_median_s"] < TARGET_SECONDS else "**no**"
        lines.append(
            f"| {row['case']} | {row['first_state_median_s']:.3f} s | {row['first_state_max_s']:.3f} s | "
            f"{row['exit_median_s']:.3f} s | {row['exit_max_s']:.3f} s | {met} |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "destination-startup.md").write_text(report)
    (RESULTS / "destination-startup.json").write_text(json.dumps({"load": load, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
