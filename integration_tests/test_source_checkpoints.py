"""What source-mistral checkpoints during a read, shown the way the platform sees it: the console
script in a subprocess, killed after N records, and run again from the last STATE it had written.

- batch_jobs: read oldest first in 30-day windows of created_at, the state moving as windows
  complete, so the next read resumes near where the killed one stopped.
- files: a data feed (newest first, no date filter): the state moves only once the stream is
  complete, and an incremental read asks only the pages newer than the state."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import requests
from airbyte_cdk.models import SyncMode
from airbyte_cdk.test.catalog_builder import CatalogBuilder
from airbyte_cdk.test.entrypoint_wrapper import read

from integration_tests.test_source_outside_findings import REPO_ROOT, _source_command
from mistral_emulator import EmulatorServer, EmulatorSettings
from source_mistral.source import SourceMistral

KEY = "checkpoint-key-0123456789"


def _catalog_file(tmp_path: Path, stream: str) -> Path:
    catalog = {
        "streams": [
            {
                "stream": {
                    "name": stream,
                    "json_schema": {},
                    "supported_sync_modes": ["full_refresh", "incremental"],
                },
                "sync_mode": "incremental",
                "destination_sync_mode": "append_dedup",
            }
        ]
    }
    path = tmp_path / f"catalog-{stream}.json"
    path.write_text(json.dumps(catalog))
    return path


def read_until(
    tmp_path: Path, config: dict, stream: str, state: list | None = None, kill_after: int | None = None
) -> tuple[list[dict], dict | None]:
    """Runs `source-mistral read`; with `kill_after`, kills it (SIGKILL) once that many records have
    come out. Returns the records and the last STATE read before that, as the platform keeps them."""
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    args = [*_source_command(), "read", "--config", str(config_path), "--catalog", str(_catalog_file(tmp_path, stream))]
    if state is not None:
        state_path = tmp_path / "state.json"
        state_path.write_text(json.dumps(state))
        args += ["--state", str(state_path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)}
    records: list[dict] = []
    last_state = None
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env) as process:
        assert process.stdout is not None
        for line in process.stdout:
            if not line.startswith("{"):
                continue
            message = json.loads(line)
            if message["type"] == "RECORD":
                records.append(message["record"]["data"])
                if kill_after is not None and len(records) >= kill_after:
                    process.kill()
                    break
            elif message["type"] == "STATE":
                last_state = message["state"]
        process.wait(timeout=120)
    return records, last_state


def test_a_batch_jobs_read_killed_after_2000_of_3833_records_resumes_near_where_it_stopped(tmp_path):
    settings = EmulatorSettings(seed=1, files=5, batch_jobs=3833, agents=5, fine_tuning_jobs=5)
    with EmulatorServer(api_key=KEY, settings=settings) as emu:
        # A few milliseconds per request, so that the kill lands while windows are still being read.
        emu.configure(latency_ms=5)
        config = {"api_key": KEY, "base_url": emu.base_url}
        first, state = read_until(tmp_path, config, "batch_jobs", kill_after=2000)
        assert state is not None, "the killed read had checkpointed completed windows"
        second, final_state = read_until(tmp_path, config, "batch_jobs", state=[state])
    first_ids, second_ids = {r["id"] for r in first}, {r["id"] for r in second}
    assert len(first_ids | second_ids) == 3833, "nothing is lost between the killed read and the resumed one"
    again = first_ids & second_ids
    # What comes again: the windows that were being read when the read was killed, and the 8 days
    # before the state that every incremental read asks again.
    assert len(again) < 1000, f"the resumed read re-read {len(again)} of the {len(first_ids)} records already read"
    oldest = min(first, key=lambda r: r["created_at"])
    assert oldest["id"] not in second_ids, "the resumed read does not start again from the oldest job"
    assert final_state is not None


def test_batch_jobs_state_is_emitted_during_the_read_not_only_at_the_end(tmp_path):
    settings = EmulatorSettings(seed=1, files=5, batch_jobs=600, agents=5, fine_tuning_jobs=5)
    with EmulatorServer(api_key=KEY, settings=settings) as emu:
        config = {"api_key": KEY, "base_url": emu.base_url, "num_workers": 1}
        catalog = CatalogBuilder().with_stream("batch_jobs", SyncMode.incremental).build()
        output = read(SourceMistral(config=config, catalog=catalog), config, catalog)
    assert not output.errors, output.get_formatted_error_message()
    positions = [i for i, m in enumerate(output._messages) if m.type.name == "STATE"]
    records = [i for i, m in enumerate(output._messages) if m.type.name == "RECORD"]
    assert len(records) == 600
    during = [p for p in positions if records[0] < p < records[-1]]
    assert len(during) >= 10, f"a STATE after each 30-day window: {len(during)} between the first and last record"


def test_incremental_files_read_asks_only_the_pages_newer_than_the_state(tmp_path):
    settings = EmulatorSettings(seed=1, files=250, batch_jobs=5, agents=5, fine_tuning_jobs=5)
    with EmulatorServer(api_key=KEY, settings=settings) as emu:
        config = {"api_key": KEY, "base_url": emu.base_url, "page_size": 50}
        first, state = read_until(tmp_path, config, "files")
        assert len(first) == 250 and state is not None
        emu.reset_stats()
        second, _ = read_until(tmp_path, config, "files", state=[state])
        pages = emu.stats()["routes"]["GET /v1/files"]["200"]
    # One estimate request and the first page, which already ends on files older than the state.
    assert pages == 2, f"{pages} requests to /v1/files; the list has 5 pages"
    newest = max(r["created_at"] for r in first)
    assert all(r["created_at"] == newest for r in second), "only the files of the state's second come again"


def test_a_files_read_killed_partway_through_an_incremental_sync_keeps_the_previous_state(tmp_path):
    """Newest first, a partial read has covered only the newest files: no state may say so, so the
    killed read leaves the previous state, and the next read asks from it again."""
    settings = EmulatorSettings(seed=1, files=200, batch_jobs=5, agents=5, fine_tuning_jobs=5)
    with EmulatorServer(api_key=KEY, settings=settings) as emu:
        emu.configure(latency_ms=5)
        config = {"api_key": KEY, "base_url": emu.base_url, "page_size": 20}
        _, state = read_until(tmp_path, config, "files")
        headers = {"Authorization": f"Bearer {KEY}"}
        for i in range(60):
            requests.post(
                f"{emu.base_url}/v1/files",
                headers=headers,
                files={"file": (f"new-{i}.jsonl", b'{"custom_id": "0", "body": {}}\n', "application/jsonl")},
                data={"purpose": "batch"},
                timeout=10,
            ).raise_for_status()
        killed, killed_state = read_until(tmp_path, config, "files", state=[state], kill_after=30)
        assert killed_state is None, "no STATE before the data feed completes"
        resumed, _ = read_until(tmp_path, config, "files", state=[state])
    assert len({r["id"] for r in resumed}) >= 60, "the 60 new files"
    assert len(resumed) <= 60 + 20, "and only the files around the state, not the 200 older ones"
