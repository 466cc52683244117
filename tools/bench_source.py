"""Source read benchmark: `source-mistral read` of files and batch jobs from the emulator, beside a
plain page-by-page HTTP loop over the same endpoints, each as a whole process, in the same run.

Prints records/s, requests sent and peak RSS, and keeps the figures in bench-results/."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BIN = Path(sys.executable).parent
API_KEY = "bench-key"
STREAMS = ("files", "batch_jobs")


def plain_loop(base_url: str, api_key: str, page_size: int) -> None:
    """What example code writes: one session, page after page until a short page, one JSON line per
    record on stdout."""
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {api_key}"
    out = sys.stdout
    for path in ("files", "batch/jobs"):
        page = 0
        while True:
            response = session.get(f"{base_url}/v1/{path}", params={"page": page, "page_size": page_size}, timeout=60)
            response.raise_for_status()
            data = response.json()["data"]
            for record in data:
                out.write(json.dumps(record) + "\n")
            if len(data) < page_size:
                break
            page += 1
    out.flush()


def _measure(command: list[str], cwd: Path) -> dict:
    """Runs one contender as its own process; counts RECORD lines (or JSON lines) on its stdout."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=cwd)
    records = 0
    for line in process.stdout:
        if line.startswith(b'{"type":"RECORD"') or (line.startswith(b"{") and b'"type":"' not in line[:9]):
            records += 1
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"{command[0]} exited with status {status}")
    return {
        "records": records,
        "seconds": round(elapsed, 3),
        "records_per_s": round(records / elapsed),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
    }


def _requests_sent(emulator) -> int:
    stats = emulator.stats()
    return int(stats["total"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--batch-jobs", type=int, default=5000)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--plain-loop", nargs=2, metavar=("BASE_URL", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_loop:
        plain_loop(*args.plain_loop, page_size=args.page_size)
        return

    from mistral_emulator import EmulatorProcess, EmulatorSettings

    work = REPO / "out" / "bench"
    work.mkdir(parents=True, exist_ok=True)
    settings = EmulatorSettings(files=args.files, batch_jobs=args.batch_jobs, agents=0, fine_tuning_jobs=0)
    with EmulatorProcess(api_key=API_KEY, settings=settings) as emulator:
        config = work / "source_config.json"
        config.write_text(json.dumps({"api_key": API_KEY, "base_url": emulator.base_url, "page_size": args.page_size}))
        catalog = work / "source_catalog.json"
        catalog.write_text(
            json.dumps(
                {
                    "streams": [
                        {
                            "stream": {
                                "name": s,
                                "json_schema": {},
                                "supported_sync_modes": ["full_refresh", "incremental"],
                            },
                            "sync_mode": "full_refresh",
                            "destination_sync_mode": "overwrite",
                        }
                        for s in STREAMS
                    ]
                }
            )
        )

        results = {}
        contenders = {
            "source-mistral read": [
                str(BIN / "source-mistral"),
                "read",
                "--config",
                str(config),
                "--catalog",
                str(catalog),
            ],
            "plain page-by-page loop": [
                sys.executable,
                __file__,
                "--page-size",
                str(args.page_size),
                "--plain-loop",
                emulator.base_url,
                API_KEY,
            ],
        }
        for name, command in contenders.items():
            emulator.reset_stats()
            result = _measure(command, cwd=work)
            result["requests"] = _requests_sent(emulator)
            results[name] = result

    expected = args.files + args.batch_jobs
    print(
        f"\nSource read: {args.files} files + {args.batch_jobs} batch jobs, page_size {args.page_size}, "
        f"emulator without latency, {os.cpu_count()} cores"
    )
    print(f"{'contender':<26} {'records':>8} {'seconds':>8} {'records/s':>10} {'requests':>9} {'peak RSS MiB':>13}")
    for name, r in results.items():
        print(
            f"{name:<26} {r['records']:>8} {r['seconds']:>8} {r['records_per_s']:>10} "
            f"{r['requests']:>9} {r['peak_rss_mib']:>13}"
        )
        if r["records"] != expected:
            raise SystemExit(f"{name} read {r['records']} records, expected {expected}")
    out = REPO / "bench-results" / "source_read.json"
    out.write_text(
        json.dumps(
            {"files": args.files, "batch_jobs": args.batch_jobs, "page_size": args.page_size, "results": results},
            indent=2,
        )
        + "\n"
    )
    print(f"results kept in {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
