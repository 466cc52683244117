"""When storing fails: a record the store cannot take becomes that record's error row and the sync
goes on; a store that fails (a full disk, a file size limit, an I/O error) stops the sync with a
transient error, after which no STATE leaves, and every record a released STATE covers is stored."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from airbyte_cdk.models import Type
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_mistral.destination import DestinationMistral
from destination_mistral.sinks.duckdb_sink import DuckDBSink
from tests.support.builders import catalog, complete, configured_stream, record, review, state

BIN = Path(sys.executable).parent


def config_for(tmp_path: Path, output: str) -> dict:
    out = (
        {"type": "duckdb", "path": str(tmp_path / "out.duckdb")}
        if output == "duckdb"
        else {"type": "jsonl", "directory": str(tmp_path / "jsonl")}
    )
    return {"api_key": "k-123456", "base_url": "http://127.0.0.1:9", "enrichment": {"mode": "none"}, "output": out}


def stored_ids(tmp_path: Path, output: str) -> list[int]:
    if output == "duckdb":
        con = duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True)
        try:
            return [r[0] for r in con.execute("SELECT id FROM reviews").fetchall()]
        finally:
            con.close()
    return [
        json.loads(line)["id"]
        for line in (tmp_path / "jsonl" / "reviews.jsonl").read_text().splitlines()
        if line.strip()
    ]


@pytest.mark.parametrize("output", ["duckdb", "jsonl"])
def test_a_full_disk_stops_the_sync_and_every_released_state_is_stored(tmp_path, output):
    """The file size limit stands in for a full disk: the kernel refuses the write the same way."""
    config, catalog_path = tmp_path / "config.json", tmp_path / "catalog.json"
    config.write_text(json.dumps(config_for(tmp_path, output)))
    from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer

    catalog_path.write_text(
        json.dumps(ConfiguredAirbyteCatalogSerializer.dump(catalog(configured_stream(mode="append"))))
    )
    lines = []
    for i in range(3000):
        data = review(i, os.urandom(300).hex())  # random text: compression cannot keep it under the limit
        lines.append(
            json.dumps(
                {"type": "RECORD", "record": {"stream": "reviews", "data": data, "emitted_at": 1_700_000_000_000}}
            )
        )
        if i % 100 == 99:
            lines.append(
                json.dumps(
                    {
                        "type": "STATE",
                        "state": {
                            "type": "STREAM",
                            "stream": {"stream_descriptor": {"name": "reviews"}, "stream_state": {"position": i + 1}},
                        },
                    }
                )
            )

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a refused write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))

    done = subprocess.run(
        [str(BIN / "destination-mistral"), "write", "--config", str(config), "--catalog", str(catalog_path)],
        input="\n".join(lines).encode(),
        capture_output=True,
        preexec_fn=limit_file_size,
        timeout=120,
    )
    messages = [json.loads(line) for line in done.stdout.decode().splitlines() if line.startswith("{")]
    errors = [m["trace"]["error"] for m in messages if m["type"] == "TRACE" and m["trace"]["type"] == "ERROR"]
    released = [m["state"]["stream"]["stream_state"]["position"] for m in messages if m["type"] == "STATE"]
    assert done.returncode != 0 and errors, "a store that cannot be written fails the sync"
    assert errors[0]["failure_type"] == "transient_error", errors[0]
    assert "could not be written" in errors[0]["message"] and "Traceback" not in errors[0]["message"]
    assert released and released[-1] < 3000, "the sync must have stopped part way for this test to mean something"
    ids = set(stored_ids(tmp_path, output))
    assert set(range(released[-1])) <= ids, f"records covered by STATE {released[-1]} are missing"
    if output == "jsonl":
        text = (tmp_path / "jsonl" / "reviews.jsonl").read_bytes()
        assert text.endswith(b"\n"), "a write cut short by the full disk leaves no partial line behind"


class RefusingSink(DuckDBSink):
    """A store that refuses one record's row (as a database refuses a value it cannot hold), and,
    if asked, its error row as well."""

    refused_ids: set = {3}
    refuse_stand_in = False

    def _insert_batch(self, plan, items):
        for item in items:
            stand_in = item.result is not None  # enrichment is none: only an error row carries a result
            if (item.record.get("id") in self.refused_ids and not stand_in) or (stand_in and self.refuse_stand_in):
                raise duckdb.ConversionException("Conversion Error: the value does not fit")
        super()._insert_batch(plan, items)


@pytest.mark.parametrize("mode", ["append_dedup", "append", "overwrite"])
def test_a_record_the_store_refuses_becomes_its_error_row_and_the_rest_is_stored(tmp_path, monkeypatch, caplog, mode):
    # The error row keeps the record's key in every sync mode: it says which record it stands for.
    monkeypatch.setattr("destination_mistral.sinks.duckdb_sink.DuckDBSink", RefusingSink)
    messages = [record(review(i)) for i in range(6)] + [state({"position": 6}), complete()]
    out = list(
        DestinationMistral().write(config_for(tmp_path, "duckdb"), catalog(configured_stream(mode=mode)), messages)
    )
    assert [m.type for m in out] == [Type.STATE], "the batch's records are all stored, so the STATE leaves"
    con = duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True)
    rows = con.execute("SELECT id, review, _airbyte_meta FROM reviews ORDER BY id").fetchall()
    con.close()
    assert [r[0] for r in rows] == [0, 1, 2, 3, 4, 5], "every record has its row; the refused one keeps its key"
    refused = rows[3]
    assert refused[1] is None
    changes = json.loads(refused[2])["changes"]
    assert {"field": "review", "change": "NULLED", "reason": "DESTINATION_SERIALIZATION_ERROR"} in changes
    [summary] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("summary:")]
    assert "1 refused by the output (stored as error rows)" in summary, summary


def test_a_store_that_refuses_even_the_error_row_stops_the_sync_without_a_state(tmp_path, monkeypatch):
    class RefusingEverything(RefusingSink):
        refuse_stand_in = True

    monkeypatch.setattr("destination_mistral.sinks.duckdb_sink.DuckDBSink", RefusingEverything)
    messages = [record(review(i)) for i in range(6)] + [state({"position": 6}), complete()]
    released = []
    with pytest.raises(AirbyteTracedException) as caught:
        for message in DestinationMistral().write(
            config_for(tmp_path, "duckdb"), catalog(configured_stream(mode="append")), messages
        ):
            released.append(message)
    assert released == [], "the record is neither stored nor an error row: its STATE must not leave"
    assert "refused a commit" in caught.value.message


def test_a_duckdb_file_locked_by_another_process_is_a_transient_error_and_releases_no_state(tmp_path):
    """Another process holding the file (DuckDB allows one writer) is temporary: the platform should
    retry the sync, so the failure is transient, and nothing is written meanwhile."""
    import subprocess
    import sys
    import textwrap

    from airbyte_cdk.utils.traced_exception import AirbyteTracedException

    from destination_mistral.destination import DestinationMistral
    from integration_tests.test_destination_platform_scenarios import config_for
    from tests.support.builders import catalog, configured_stream, record, state

    config = config_for(tmp_path, "duckdb")
    list(DestinationMistral().write(config, catalog(configured_stream(mode="append")), [record({"id": 1})]))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import duckdb, sys, time
            con = duckdb.connect({str(tmp_path / "out.duckdb")!r})
            print("held", flush=True)
            time.sleep(60)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        messages = [record({"id": 2}), state({"position": 1})]
        with pytest.raises(AirbyteTracedException) as caught:
            list(DestinationMistral().write(config, catalog(configured_stream(mode="append")), messages))
        assert caught.value.failure_type.value == "transient_error", caught.value.message
        assert "another process" in caught.value.message
    finally:
        holder.kill()
        holder.wait()


def test_long_records_far_beyond_the_duckdb_buffer_pool_are_all_committed(tmp_path):
    """DuckDB holds each long string written since its last checkpoint in memory: 240 MB of 120 KB
    records, more than the output's buffer pool, once made a commit fail halfway through the sync."""
    config = config_for(tmp_path, "duckdb")
    text = "word " * 24_000
    messages = [record({"id": i, "review": f"{i} {text}"}) for i in range(2_000)]
    messages = [
        m for i, message in enumerate(messages) for m in ([message, state({"n": i})] if i % 100 == 99 else [message])
    ]
    out = list(DestinationMistral().write(config, catalog(configured_stream()), [*messages, complete()]))
    assert sum(m.type == Type.STATE for m in out) == 20
    assert sorted(stored_ids(tmp_path, "duckdb")) == list(range(2_000))
