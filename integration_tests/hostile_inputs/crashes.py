"""Crash scenarios: destination-mistral is killed with SIGKILL at chosen points of a sync (as when a
container is killed), then run again with the input replayed from the last STATE it emitted, as the
platform does.

What each sync mode promises after a crash:
- append_dedup: every record exactly once; records committed before the crash are answered from the
  cache, not sent to the API again.
- overwrite: the previous sync's table is intact until the new sync completes (the new rows wait in
  a staging table); a resumed attempt keeps its staging rows.
- append (and the staging rows of a resumed overwrite): every record at least once. Rows committed
  after the last STATE the platform saw are written again when it replays from that STATE, so they
  can appear twice; their second copy costs no API call (the cache answers it). Append never
  touches rows already written, so it cannot tell a replayed record from a new one with the same
  content: exactly-once needs a primary key, which is what append_dedup is for.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from pathlib import Path

from integration_tests.hostile_inputs.faults import CHAT_ROUTE, leak_emulator
from integration_tests.hostile_inputs.harness import (
    Capture,
    Scenario,
    catalog_dict,
    chat_config,
    embed_config,
    input_lines,
    output_files,
    query,
    replay_after_last_state,
    review,
    write_in_process,
    write_subprocess,
)


def _readable(out: Path) -> dict[str, int]:
    """Every table of the file can be read (a kill must never leave it unreadable); row counts."""
    tables = query(out, "SELECT table_schema, table_name FROM information_schema.tables")
    return {f"{s}.{t}": query(out, f'SELECT count(*) FROM "{s}"."{t}"')[0][0] for s, t in tables}


def _stored_answers(tables: dict[str, int]) -> int:
    """Cache rows in the file after the kill: one per record whose answer was committed (every
    record here has a distinct input)."""
    return tables.get("main._mistral_cache", 0)


def _ids(out: Path, table: str = "reviews") -> list[int]:
    return [r[0] for r in query(out, f"SELECT id FROM {table} ORDER BY id")]


def _after_states(count: int) -> Callable[[dict, int], bool]:
    return lambda message, states: states >= count


def _after_start(seconds: float) -> Callable[[dict, int], bool]:
    def decide(message: dict, states: int) -> bool:
        if message.get("type") == "LOG" and "Begin writing" in message["log"]["message"]:
            time.sleep(seconds)  # requests are in flight: the emulator answers slowly
            return True
        return False

    return decide


def _records(n: int, tag: str = "") -> list[dict]:
    return [review(i, f"{tag} distinct review {i} about sound and shipping") for i in range(n)]


def _kill_and_resume(
    name: str,
    workdir: Path,
    mode: str,
    kill_when,
    records: list[dict],
    *,
    every: int = 10,
    config_of=chat_config,
    sync_id: int | None = None,
    latency_ms: float = 40,
):
    """Runs the sync in a process killed by `kill_when`, checks the file, then resumes in process
    with the replayed input. Returns (captures, rows before, committed ids, replayed lines, API calls of the resume)."""
    out = workdir / "out.duckdb"
    lines = input_lines(records, every=every)
    with leak_emulator(latency_ms=latency_ms) as emu:
        config = config_of(emu.base_url, out, limits={"max_concurrent_requests": 4})
        catalog = catalog_dict(mode, sync_id=sync_id)
        killed = write_subprocess(f"{name} (killed)", workdir / "killed", config, catalog, lines, kill_when=kill_when)
        assert killed.returncode == -9, f"{name}: the process should have been killed mid-sync\n{killed.describe()}"
        tables = _readable(out) if out.exists() else {}
        replay = replay_after_last_state(lines, killed)
        emu.configure(latency_ms=0)
        emu.reset_stats()
        resumed = write_in_process(f"{name} (resumed)", workdir / "resumed", config, catalog, replay)
        calls = emu.stats()["routes"]
    assert resumed.returncode == 0 and not resumed.errors, resumed.describe()
    killed.files = resumed.files = output_files(workdir)
    return killed, resumed, tables, replay, calls


def _replayed_ids(replay: list[bytes]) -> set[int]:
    import json

    return {json.loads(line)["record"]["data"]["id"] for line in replay if b'"RECORD"' in line}


def _dedup(name: str, workdir: Path, kill_when, expect_states: int | None) -> list[Capture]:
    records = _records(60)
    out = workdir / "out.duckdb"
    killed, resumed, tables, replay, calls = _kill_and_resume(name, workdir, "append_dedup", kill_when, records)
    if expect_states is not None:
        # The kill is sent once the k-th STATE is seen; lines already in the pipe by then may hold
        # one more, and the replay starts after whichever came last.
        seen = len(killed.states)
        assert (seen >= expect_states) if expect_states else seen == 0, (
            f"{name}: killed after {expect_states} STATE(s): {seen}"
        )
    ids = _ids(out)
    assert ids == list(range(60)), (
        f"{name}: every record exactly once after the resume: {collections.Counter(ids).most_common(3)}"
    )
    committed = tables.get("main.reviews", 0)
    replayed = _replayed_ids(replay)
    cached = {r[0] for r in query(out, "SELECT id FROM reviews WHERE _mistral_cached")}
    sent = sum(v for k, v in calls.get(CHAT_ROUTE, {}).items() if k == "200")
    # The committed rows among the replayed ones come from the cache: only the others are sent.
    assert sent == len(replayed) - len(replayed & cached), (
        f"{name}: {sent} requests for {len(replayed)} replayed, {len(replayed & cached)} cached"
    )
    committed_replayed = set(range(60 - len(replayed), committed))
    assert committed_replayed <= cached, (
        f"{name}: every replayed record committed before the crash ({committed} rows) should be answered from the cache"
    )
    # A commit also stores every answer already paid for, including those of records after the
    # committed prefix: exactly the replayed records whose answers were stored before the crash
    # come from the cache.
    assert len(replayed & cached) == _stored_answers(tables) - (60 - len(replayed)), (
        f"{name}: the replayed records answered from the cache should be exactly those stored before the crash"
    )
    assert all(r[0] is None for r in query(out, "SELECT _mistral_error FROM reviews")), (
        f"{name}: no record should carry an error"
    )
    return [killed, resumed]


def dedup_killed_after_first_state(workdir: Path) -> list[Capture]:
    return _dedup("append_dedup, killed after the first STATE", workdir, _after_states(1), 1)


def dedup_killed_after_third_state(workdir: Path) -> list[Capture]:
    return _dedup("append_dedup, killed after the third STATE", workdir, _after_states(3), 3)


def dedup_killed_before_any_state(workdir: Path) -> list[Capture]:
    return _dedup("append_dedup, killed with requests in flight before any STATE", workdir, _after_start(0.3), 0)


def overwrite_killed_keeps_previous_data(workdir: Path) -> list[Capture]:
    name = "overwrite, killed after the second STATE"
    out = workdir / "out.duckdb"
    with leak_emulator() as emu:
        previous = write_in_process(
            f"{name} (previous sync)",
            workdir / "previous",
            chat_config(emu.base_url, out),
            catalog_dict("overwrite", sync_id=1),
            input_lines([review(i) for i in range(100, 110)]),
        )
    assert not previous.errors, previous.describe()
    records = _records(50, "new")
    killed, resumed, tables, replay, _ = _kill_and_resume(
        name, workdir, "overwrite", _after_states(2), records, sync_id=2
    )
    assert tables.get("main.reviews") == 10, f"{name}: the previous table must be intact after the kill: {tables}"
    ids = _ids(out)
    counts = collections.Counter(ids)
    assert set(ids) == set(range(50)), (
        f"{name}: the new sync replaces the old rows with every new record: {sorted(set(ids))[:5]}..."
    )
    replayed = _replayed_ids(replay)
    twice = {i for i, c in counts.items() if c > 1}
    assert twice <= replayed and max(counts.values()) <= 2, (
        f"{name}: only rows committed after the last STATE may repeat: {twice}"
    )
    previous.files = output_files(workdir)
    return [previous, killed, resumed]


def append_killed_writes_every_record_at_least_once(workdir: Path) -> list[Capture]:
    name = "append, killed after the second STATE"
    out = workdir / "out.duckdb"
    killed, resumed, tables, replay, calls = _kill_and_resume(name, workdir, "append", _after_states(2), _records(50))
    counts = collections.Counter(_ids(out))
    assert set(counts) == set(range(50)), f"{name}: every record at least once"
    replayed = _replayed_ids(replay)
    twice = {i for i, c in counts.items() if c > 1}
    assert twice <= replayed and max(counts.values()) <= 2, (
        f"{name}: only rows committed after the last STATE may repeat: {twice}"
    )
    sent = sum(v for k, v in calls.get(CHAT_ROUTE, {}).items() if k == "200")
    cached = {r[0] for r in query(out, "SELECT id FROM reviews WHERE _mistral_cached")}
    assert twice <= cached, f"{name}: a repeated row's answer comes from the cache"
    # Answers stored before the crash, of committed rows and of records after them alike, are not paid again.
    assert sent == len(replayed) - (_stored_answers(tables) - (50 - len(replayed))), (
        f"{name}: only replayed records without a stored answer are sent ({sent} requests)"
    )
    return [killed, resumed]


def _timed_kill(name: str, workdir: Path, seconds: float) -> list[Capture]:
    # Embeddings into append_dedup, killed at a fixed time: wherever the kill lands (a commit, a
    # batch in flight, the DuckDB checkpoint), the file opens and the resumed sync completes.
    out = workdir / "out.duckdb"
    # Enough records and slow enough answers that the sync lasts well past the latest kill (about 9
    # requests of up to 16,384 tokens, 4 at a time, 150 ms each, besides the commits).
    records = [review(i, f"text {i} " * 20) for i in range(1200)]

    started: list[float] = []

    def at_time(message: dict, states: int) -> bool:
        if not started:
            started.append(time.monotonic())
        return time.monotonic() - started[0] >= seconds

    killed, resumed, tables, replay, _ = _kill_and_resume(
        name, workdir, "append_dedup", at_time, records, every=25, config_of=embed_config, latency_ms=150
    )
    assert _ids(out) == list(range(1200)), f"{name}: every record exactly once after the resume"
    return [killed, resumed]


def killed_at_0_3_seconds_file_stays_readable(workdir: Path) -> list[Capture]:
    return _timed_kill("embeddings, killed 0.3 s into the sync", workdir, 0.3)


def killed_at_0_8_seconds_file_stays_readable(workdir: Path) -> list[Capture]:
    return _timed_kill("embeddings, killed 0.8 s into the sync", workdir, 0.8)


SCENARIOS = [
    Scenario(f.__name__, f)
    for f in (
        dedup_killed_after_first_state,
        dedup_killed_after_third_state,
        dedup_killed_before_any_state,
        overwrite_killed_keeps_previous_data,
        append_killed_writes_every_record_at_least_once,
        killed_at_0_3_seconds_file_stays_readable,
        killed_at_0_8_seconds_file_stays_readable,
    )
]
