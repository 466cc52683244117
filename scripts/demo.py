"""The README's main command: sync a Mistral account served by the bundled emulator with
source-mistral, then enrich a bundled sample dataset with destination-mistral."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from destination_mistral.demo import run_demo  # noqa: E402
from mistral_emulator import EmulatorProcess, EmulatorSettings  # noqa: E402

BIN = Path(sys.executable).parent
WORK = REPO / "out" / "demo"
API_KEY = "demo-key"


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)


def _messages(stdout: str):
    for line in stdout.splitlines():
        if line.startswith("{"):
            yield json.loads(line)


def sync_source(base_url: str) -> None:
    config = WORK / "source_config.json"
    config.write_text(json.dumps({"api_key": API_KEY, "model": "mistral-small-latest", "base_url": base_url + "/v1/chat/completions"}))
    print(f"== source-mistral against the emulator at {base_url} (base_url pasted as a full chat endpoint)")

    check = _run([str(BIN / "source-mistral"), "check", "--config", str(config)])
    status = next(m["connectionStatus"] for m in _messages(check.stdout) if m["type"] == "CONNECTION_STATUS")
    print(f"check: {status['status']}")
    if status["status"] != "SUCCEEDED":
        raise SystemExit(f"check failed: {status.get('message')}")

    discover = _run([str(BIN / "source-mistral"), "discover", "--config", str(config)])
    catalog = next(m["catalog"] for m in _messages(discover.stdout) if m["type"] == "CATALOG")
    configured = {
        "streams": [
            {
                "stream": stream,
                "sync_mode": "incremental" if "incremental" in stream["supported_sync_modes"] else "full_refresh",
                "destination_sync_mode": "append_dedup",
                "primary_key": [["id"]],
                "cursor_field": stream.get("default_cursor_field", []),
            }
            for stream in catalog["streams"]
        ]
    }
    catalog_path = WORK / "source_catalog.json"
    catalog_path.write_text(json.dumps(configured))
    print(f"discover: {', '.join(s['name'] for s in catalog['streams'])}")

    started = time.perf_counter()
    read = _run([str(BIN / "source-mistral"), "read", "--config", str(config), "--catalog", str(catalog_path)])
    elapsed = time.perf_counter() - started
    if read.returncode != 0:
        raise SystemExit(f"read failed (exit {read.returncode}):\n{read.stdout[-2000:]}")
    counts: Counter[str] = Counter()
    states = {}
    samples = {}
    for message in _messages(read.stdout):
        if message["type"] == "RECORD":
            stream = message["record"]["stream"]
            counts[stream] += 1
            samples.setdefault(stream, message["record"]["data"])
        elif message["type"] == "STATE" and "stream" in message["state"]:
            descriptor = message["state"]["stream"]
            states[descriptor["stream_descriptor"]["name"]] = descriptor.get("stream_state")
    (WORK / "source_records.jsonl").write_text(read.stdout)
    print(f"read: {sum(counts.values())} records in {elapsed:.1f} s")
    print(f"  {'stream':<18} {'records':>8}  first record / state")
    for stream in [s["name"] for s in catalog["streams"]]:
        sample = samples.get(stream, {})
        summary = ", ".join(f"{k}={sample[k]}" for k in ("id", "status", "filename", "name") if k in sample)
        print(f"  {stream:<18} {counts[stream]:>8}  {summary[:70]}")
        if states.get(stream):
            print(f"  {'':<18} {'':>8}  state {json.dumps(states[stream])}")


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    settings = EmulatorSettings(files=230, batch_jobs=120, agents=25, fine_tuning_jobs=12)
    with EmulatorProcess(api_key=API_KEY, settings=settings) as emulator:
        sync_source(emulator.base_url)
        print()
        run_demo(emulator.base_url, API_KEY, WORK)


if __name__ == "__main__":
    main()
