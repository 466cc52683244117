"""Throughput benchmark: pipes N records through `destination-mistral write` (a real subprocess) in
chat and in embeddings mode, against the emulator in its own process with a fixed latency per
request, and prints records/s and the destination's peak RSS.

    python -m destination_mistral.bench --records 5000 --latency-ms 100 --concurrency 64
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from destination_mistral.testing import catalog, configured_stream, messages_with_states, review, serialize

REPO_ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


def run_once(base_url: str, api_key: str, mode: str, records: int, concurrency: int, work: Path) -> dict:
    enrichment = (
        {"mode": "chat", "prompt_template": "Classify this review: {{ review }}", "temperature": 0, "max_tokens": 32}
        if mode == "chat" else {"mode": "embeddings", "fields": ["product", "review"]}
    )
    database = work / f"bench_{mode}.duckdb"
    config = {"api_key": api_key, "base_url": base_url, "enrichment": enrichment,
              "output": {"type": "duckdb", "path": str(database)},
              "limits": {"max_concurrent_requests": concurrency, "max_retries": 5},
              "cache": {"enabled": True}}
    config_path = work / f"bench_{mode}_config.json"
    config_path.write_text(json.dumps(config))
    catalog_path = work / "bench_catalog.json"
    from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer

    catalog_path.write_text(json.dumps(ConfiguredAirbyteCatalogSerializer.dump(catalog(configured_stream(mode="append")))))
    # Distinct texts, so that every record costs a request (or a batch slot): no cache hits.
    data = serialize(messages_with_states((review(i, f"Review {i} of product {i % 97}: battery {i % 13}, screen {i % 7}, "
                                                    f"shipping took {i % 11} days, sound {i % 5}/5.") for i in range(records)),
                                         every=500))
    input_path = work / f"bench_{mode}_input.jsonl"
    input_path.write_text(data)
    started = time.perf_counter()
    with open(input_path, "rb") as stdin:
        process = subprocess.Popen([sys.executable, "-m", "destination_mistral", "write", "--config", str(config_path), "--catalog",
                                    str(catalog_path)], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env())
        out = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    states = out.count(b'"type":"STATE"')
    summary = next((json.loads(line)["log"]["message"] for line in out.splitlines() if b"summary:" in line), "")
    if process.returncode != 0:
        raise SystemExit(f"{mode}: destination failed (exit {process.returncode}): {out[-2000:].decode(errors='replace')}")
    return {"mode": mode, "records": records, "seconds": round(elapsed, 2), "records_per_s": round(records / elapsed, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "states": states, "summary": summary}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--modes", default="chat,embeddings")
    parser.add_argument("--output", help="a JSON file to keep the results in")
    args = parser.parse_args(argv)
    from mistral_emulator.server import EmulatorProcess
    from mistral_emulator.settings import EmulatorSettings

    results = []
    with tempfile.TemporaryDirectory(prefix="destination-mistral-bench-") as tmp, \
            EmulatorProcess(api_key="bench-key", settings=EmulatorSettings(latency_ms=args.latency_ms)) as emulator:
        for mode in args.modes.split(","):
            results.append(run_once(emulator.base_url, "bench-key", mode, args.records, args.concurrency, Path(tmp)))
            requests = emulator.stats()
            results[-1]["api_requests"] = sum(sum(c.values()) for r, c in requests["routes"].items() if r.startswith("POST /v1"))
            emulator.reset_stats()
    print(f"destination-mistral benchmark: {args.records} records, emulator latency {args.latency_ms:.0f} ms/request, "
          f"max_concurrent_requests {args.concurrency}")
    print(f"{'mode':<11} {'seconds':>8} {'records/s':>10} {'requests':>9} {'peak RSS MB':>12} {'states':>7}")
    for r in results:
        print(f"{r['mode']:<11} {r['seconds']:>8} {r['records_per_s']:>10} {r['api_requests']:>9} {r['peak_rss_mb']:>12} {r['states']:>7}")
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
