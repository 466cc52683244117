"""The window of records read but not yet committed (`limits.max_buffer_mb`): reading that waits for
room gets what is complete committed at once, whatever share of the window it holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# The sync runs with the clock's commits an hour apart: a sync that needs them to go on never ends.
_WITHOUT_TIMED_COMMITS = (
    "import sys; import destination_mistral.sync.schedule as schedule; "
    "schedule.COMMIT_INTERVAL_SECONDS = 3600.0; "
    "from destination_mistral.run import run; run(sys.argv[1:])"
)


@pytest.mark.parametrize("pad_bytes", [120_000, 200_000, 350_000])
def test_records_of_a_large_share_of_the_window_never_wait_for_the_clock_to_be_committed(tmp_path, pad_bytes):
    """A record of 120 or 200 KB holds 36% or 60% of a 1 MB window in memory: reading waits for it,
    and it was committed only by the 5 s clock (12 records took 25 to 55 s)."""
    config = {
        "api_key": "k-12345678",
        "base_url": "http://127.0.0.1:9",
        "enrichment": {"mode": "none"},
        "output": {"type": "jsonl", "directory": str(tmp_path / "out")},
        "limits": {"max_buffer_mb": 1},
    }
    schema = {"type": "object", "properties": {"id": {"type": "integer"}, "pad": {"type": "string"}}}
    stream = {"name": "s1", "json_schema": schema, "supported_sync_modes": ["full_refresh"]}
    catalog = {"streams": [{"stream": stream, "sync_mode": "full_refresh", "destination_sync_mode": "append"}]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))
    records = [{"stream": "s1", "emitted_at": 1, "data": {"id": i, "pad": "x" * pad_bytes}} for i in range(12)]
    lines = [json.dumps({"type": "RECORD", "record": record}) for record in records]
    lines.append(json.dumps({"type": "STATE", "state": {"type": "LEGACY", "data": {"seq": 1}}}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _WITHOUT_TIMED_COMMITS, "write"]
            + ["--config", "config.json", "--catalog", "catalog.json"],
            input=("\n".join(lines) + "\n").encode(),
            capture_output=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the sync waited for a timed commit: reading waited for room that no commit made")
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    states = [m for m in map(json.loads, done.stdout.decode().splitlines()) if m["type"] == "STATE"]
    assert len(states) == 1
    rows = (tmp_path / "out" / "s1.jsonl").read_text().splitlines()
    assert sorted(json.loads(row)["id"] for row in rows) == list(range(12))
