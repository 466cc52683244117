"""`destination-mistral load` as a user runs it: a CSV or JSON Lines file of plain records, enriched
against the emulator and stored through the same write path as `write`; bad input refused before
anything is written; a rerun after an interrupted load resuming from its last STATE without storing
a record twice; the API key in no output."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import orjson
import pytest

from integration_tests.hostile_inputs.faults import CHAT_ROUTE, EMBED_ROUTE, leak_emulator
from integration_tests.hostile_inputs.harness import (
    LEAK_KEY,
    REPO_ROOT,
    Capture,
    api_calls,
    chat_config,
    destination_command,
    embed_config,
    leaks,
    output_files,
    query,
)

SAMPLES = REPO_ROOT / "sample_data"


def env() -> dict[str, str]:
    values = dict(os.environ)
    values["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), values.get("PYTHONPATH")) if p)
    return values


def load(workdir: Path, config: dict, *options: str, on_state=None, timeout: float = 120) -> Capture:
    """A real `destination-mistral load` process. `on_state(process, states_so_far)` is called after
    each STATE it prints (to kill it, or to break the service under it)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_bytes(orjson.dumps(config))
    command = [*destination_command(), "load", "--config", str(workdir / "config.json"), *options]
    lines, errors, states = [], [], 0
    # Popen's context waits for the process; the timer kills one that hangs.
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(), cwd=workdir) as process:
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        drain = threading.Thread(target=lambda: errors.append(process.stderr.read()), daemon=True)
        drain.start()
        for raw in process.stdout:
            lines.append(raw.decode("utf-8", "replace"))
            if on_state is not None and raw.startswith(b'{"type":"STATE"'):
                states += 1
                on_state(process, states)
        drain.join(30)
    timer.cancel()
    stderr = (errors[0] if errors else b"").decode("utf-8", "replace")
    return Capture("load", "".join(lines), stderr, process.returncode, output_files(workdir))


def plain_config(out: Path) -> dict:
    """Records stored unchanged (no API call): for what does not depend on the enrichment."""
    return {
        "api_key": LEAK_KEY,
        "base_url": "http://127.0.0.1:9",
        "enrichment": {"mode": "none"},
        "output": {"type": "duckdb", "path": str(out)},
    }


def stored_counts(capture: Capture) -> list[int]:
    return [m["state"]["stream"]["stream_state"]["records"] for m in capture.states]


def reviews_csv(path: Path, count: int) -> Path:
    lines = ["id,product,rating,review"]
    lines += [
        f'{i},Lamp {i % 3},{i % 5 + 1},"Distinct review {i}, about the light and the switch"' for i in range(count)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_csv_load_stores_every_record_with_its_chat_answer(tmp_path):
    with leak_emulator() as emu:
        out = tmp_path / "out.duckdb"
        capture = load(
            tmp_path,
            chat_config(emu.base_url, out),
            "--file",
            str(SAMPLES / "product_reviews.csv"),
            "--state-every",
            "15",
        )
    assert capture.returncode == 0, capture.describe()
    assert stored_counts(capture) == [15, 30, 40], "a STATE every 15 records and one at the end"
    rows = query(
        out, "SELECT count(*), count(DISTINCT id), count(_mistral_answer), count(_mistral_error) FROM product_reviews"
    )
    assert rows == [(40, 40, 40, 0)], f"every record once, each answered: {rows}"
    columns = dict(
        query(out, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'product_reviews'")
    )
    assert (columns["id"], columns["rating"], columns["review"]) == ("BIGINT", "BIGINT", "VARCHAR"), columns
    assert query(out, "SELECT review FROM product_reviews WHERE id = 1")[0][0].startswith(
        "Battery life is outstanding,"
    )
    assert "40 records of" in capture.stderr and "'product_reviews' (append_dedup, primary key id)" in capture.stderr
    assert not leaks([capture], {"api key": LEAK_KEY}), "the key must not appear in any output"


def test_jsonl_load_stores_every_record_with_its_embedding(tmp_path):
    with leak_emulator() as emu:
        config = embed_config(
            emu.base_url, tmp_path / "unused", output={"type": "jsonl", "directory": str(tmp_path / "out")}
        )
        capture = load(tmp_path, config, "--file", str(SAMPLES / "product_reviews.jsonl"), "--stream", "reviews")
        assert api_calls(emu, EMBED_ROUTE).get("200", 0) >= 1
    assert capture.returncode == 0, capture.describe()
    stored = [json.loads(line) for line in (tmp_path / "out" / "reviews.jsonl").read_text().splitlines()]
    source = [json.loads(line) for line in (SAMPLES / "product_reviews.jsonl").read_text().splitlines()]
    assert [{k: r[k] for k in source[0]} for r in stored] == source, "records stored as read, in order"
    assert all(len(r["_mistral_embedding"]) == 1024 and r["_mistral_error"] is None for r in stored)
    assert stored_counts(capture) == [40]
    assert not leaks([capture], {"api key": LEAK_KEY})


def test_the_protocol_input_example_is_what_write_reads(tmp_path):
    """sample_data/write_input_example.jsonl, which the docs show, goes through `write` as documented."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps(plain_config(tmp_path / "out.duckdb")))
    command = [
        *destination_command(),
        "write",
        "--config",
        str(config),
        "--catalog",
        str(SAMPLES / "product_reviews_catalog.json"),
    ]
    with (SAMPLES / "write_input_example.jsonl").open("rb") as stdin:
        done = subprocess.run(command, stdin=stdin, capture_output=True, env=env(), cwd=tmp_path, timeout=120)
    capture = Capture("write", done.stdout.decode(), done.stderr.decode(), done.returncode)
    assert done.returncode == 0 and not capture.errors, capture.describe()
    assert len(capture.states) == 2, "both STATEs of the example are echoed once their records are stored"
    assert query(tmp_path / "out.duckdb", "SELECT id FROM product_reviews ORDER BY id") == [(1,), (2,), (3,), (4,)]


@pytest.mark.parametrize("interruption", ["killed", "service_down"])
def test_rerun_after_an_interrupted_load_stores_each_record_once(tmp_path, interruption):
    """Killed (SIGKILL) or stopped by an outage after its second STATE, then run again with its saved
    output as --state: the rerun sends only what no STATE covered, and append_dedup stores each
    record once; a third run without --state sends nothing new to the API and duplicates nothing."""
    records = reviews_csv(tmp_path / "reviews.csv", 60)
    out = tmp_path / "out.duckdb"
    with leak_emulator(latency_ms=40) as emu:
        config = chat_config(emu.base_url, out, limits={"max_concurrent_requests": 2, "max_retry_seconds": 1})

        def interrupt(process, states):
            if states == 2:
                if interruption == "killed":
                    os.kill(process.pid, signal.SIGKILL)
                else:
                    emu.configure(fault_500=1.0)

        first = load(tmp_path / "first", config, "--file", str(records), "--state-every", "10", on_state=interrupt)
        assert first.returncode != 0, first.describe()
        assert stored_counts(first)[:2] == [10, 20]
        if interruption == "service_down":
            assert f"of the 60 records of {records} are stored" in first.stderr, first.stderr
            assert first.errors and first.errors[0]["failure_type"] == "transient_error"
        emu.configure(fault_500=0.0)
        (tmp_path / "first.out").write_text(first.stdout)
        calls_before = api_calls(emu, CHAT_ROUTE).get("200", 0)

        second = load(tmp_path / "second", config, "--file", str(records), "--state", str(tmp_path / "first.out"))
        assert second.returncode == 0, second.describe()
        resumed_calls = api_calls(emu, CHAT_ROUTE).get("200", 0) - calls_before
        assert resumed_calls <= 60 - stored_counts(first)[-1], (
            f"what a STATE covers is not sent again ({resumed_calls})"
        )
        covered = stored_counts(first)[-1]
        assert stored_counts(second)[-1] == 60 and f"The first {covered} were stored" in second.stderr

        third = load(tmp_path / "third", config, "--file", str(records))
        assert third.returncode == 0, third.describe()
        assert api_calls(emu, CHAT_ROUTE).get("200", 0) - calls_before == resumed_calls, "all from the cache"
    rows = query(out, "SELECT count(*), count(DISTINCT id), count(_mistral_answer) FROM reviews")
    assert rows == [(60, 60, 60)], f"each record exactly once, each answered: {rows}"
    assert not leaks([first, second, third], {"api key": LEAK_KEY})


def test_a_finished_overwrite_rerun_with_its_last_state_keeps_the_table(tmp_path):
    """The last STATE of an overwrite covers the whole file: a rerun given it sends nothing, and must
    not swap an empty staging table over the rows it loaded."""
    records = reviews_csv(tmp_path / "reviews.csv", 12)
    config = plain_config(tmp_path / "out.duckdb")
    first = load(tmp_path / "first", config, "--file", str(records), "--sync-mode", "overwrite")
    assert first.returncode == 0, first.describe()
    (tmp_path / "first.out").write_text(first.stdout)
    again = load(
        tmp_path / "again",
        config,
        "--file",
        str(records),
        "--sync-mode",
        "overwrite",
        "--state",
        str(tmp_path / "first.out"),
    )
    assert again.returncode == 0, again.describe()
    assert query(tmp_path / "out.duckdb", "SELECT count(*) FROM reviews") == [(12,)]
    fresh = load(
        tmp_path / "fresh", config, "--file", str(reviews_csv(tmp_path / "reviews.csv", 5)), "--sync-mode", "overwrite"
    )
    assert fresh.returncode == 0, fresh.describe()
    assert query(tmp_path / "out.duckdb", "SELECT count(*) FROM reviews") == [(5,)], "a new load replaces the table"


BAD_INPUTS = {
    # name: (file name, content or None for no file, extra options, what stderr must say)
    "malformed_json_line": (
        "reviews.jsonl",
        '{"id": 1}\n{"id": 2, "review": "ok"\n',
        [],
        "reviews.jsonl, line 2: not valid JSON",
    ),
    "not_an_object": ("reviews.jsonl", '{"id": 1}\n[1, 2]\n', [], "reviews.jsonl, line 2: the line holds an array"),
    "ragged_csv_row": (
        "reviews.csv",
        "id,review\n1,fine\n2,too,many\n",
        [],
        "reviews.csv, line 3: the row has 3 fields",
    ),
    "unclosed_quote": ("reviews.csv", 'id,review\n1,"never closed\n2,x\n', [], "reviews.csv, line 2: not valid CSV"),
    "missing_file": ("reviews.csv", None, [], "reviews.csv: no such file"),
    "empty_file": ("reviews.csv", "", [], "reviews.csv: the file is empty"),
    "header_only": ("reviews.csv", "id,review\n", [], "reviews.csv: the file has a header but no records"),
    "key_column_missing": (
        "reviews.csv",
        "id,review\n1,a\n",
        ["--primary-key", "sku"],
        "line 1: primary key column 'sku'",
    ),
    "columns_differing_only_by_case": (
        "reviews.csv",
        "id,Name,name\n1,a,b\n",
        [],
        "line 1: columns 'Name' and 'name' differ only by letter case",
    ),
    "key_value_missing": (
        "reviews.csv",
        "sku,review\n1,a\n,b\n",
        ["--primary-key", "sku"],
        "line 3: the record has no value",
    ),
}


@pytest.fixture(scope="module")
def stored_before(tmp_path_factory):
    """An output already holding a good load of stream `reviews`, which each bad load must leave as it was."""
    workdir = tmp_path_factory.mktemp("stored")
    config = plain_config(workdir / "out.duckdb")
    capture = load(workdir, config, "--file", str(reviews_csv(workdir / "reviews.csv", 7)))
    assert capture.returncode == 0, capture.describe()
    return workdir / "out.duckdb"


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_naming_file_line_and_fix_and_nothing_is_written(tmp_path, stored_before, case):
    name, content, options, expected = BAD_INPUTS[case]
    out = tmp_path / "out.duckdb"
    shutil.copy(stored_before, out)
    before = query(out, "SELECT * FROM reviews ORDER BY id")
    if content is not None:
        (tmp_path / name).write_text(content, encoding="utf-8")
    config = plain_config(out)
    capture = load(tmp_path / "run", config, "--file", str(tmp_path / name), "--stream", "reviews", *options)
    assert capture.returncode == 1, capture.describe()
    assert expected in capture.stderr, capture.stderr
    first = capture.stderr.splitlines()[0]
    assert first.rstrip(".").count(": ") >= 2, f"the message names the problem and then the fix: {first}"
    assert "Nothing was written." in capture.stderr
    assert [e["failure_type"] for e in capture.errors] == ["config_error"], capture.describe()
    assert not capture.states, "no STATE leaves for input that was refused"
    assert query(out, "SELECT * FROM reviews ORDER BY id") == before, "the output is untouched"
    assert not leaks([capture], {"api key": LEAK_KEY})


def test_a_state_of_another_file_is_refused(tmp_path):
    config = plain_config(tmp_path / "out.duckdb")
    first = load(tmp_path / "first", config, "--file", str(reviews_csv(tmp_path / "reviews.csv", 6)))
    (tmp_path / "first.out").write_text(first.stdout)
    (tmp_path / "reviews.csv").write_text("id,product,rating,review\n99,Other,1,edited first line\n")
    again = load(
        tmp_path / "again", config, "--file", str(tmp_path / "reviews.csv"), "--state", str(tmp_path / "first.out")
    )
    assert again.returncode == 1
    assert "its first 6 records are not the ones the STATE in --state" in again.stderr, again.stderr


def test_the_api_key_is_never_printed_even_when_the_api_refuses_it(tmp_path):
    with leak_emulator() as emu:
        config = chat_config(emu.base_url, tmp_path / "out.duckdb")
        config["api_key"] = LEAK_KEY + "-wrong"
        capture = load(tmp_path, config, "--file", str(SAMPLES / "product_reviews.csv"))
    assert capture.returncode == 1, capture.describe()
    assert "api_key" in capture.stderr, "the refusal names the field to fix"
    assert not leaks([capture], {"api key": LEAK_KEY}), "neither the key nor the refused one may be printed"
