"""End to end, as a pipeline runs it: `source-mistral read | destination-mistral write` into DuckDB,
both as real processes, against the emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb

REPO_ROOT = Path(__file__).resolve().parents[1]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


def _messages(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _pipe(tmp_path: Path, source_config: Path, catalog: Path, destination_config: Path) -> subprocess.CompletedProcess:
    """`source-mistral read | destination-mistral write`, both real processes; the write's outcome."""
    read = subprocess.Popen(
        [sys.executable, "-m", "source_mistral.run", "read", "--config", str(source_config), "--catalog", str(catalog)],
        stdout=subprocess.PIPE,
        env=_env(),
        cwd=tmp_path,
    )
    write = subprocess.run(
        [
            sys.executable,
            "-m",
            "destination_mistral",
            "write",
            "--config",
            str(destination_config),
            "--catalog",
            str(catalog),
        ],
        stdin=read.stdout,
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=180,
    )
    read.stdout.close()
    assert read.wait(60) == 0, "source-mistral read failed"
    assert write.returncode == 0, write.stdout[-3000:] + write.stderr[-2000:]
    return write


def test_source_read_piped_into_destination_write(emulator, tmp_path):
    source_config = tmp_path / "source.json"
    source_config.write_text(json.dumps({"api_key": emulator.api_key, "base_url": emulator.base_url}))
    discover = subprocess.run(
        [sys.executable, "-m", "source_mistral.run", "discover", "--config", str(source_config)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=120,
    )
    streams = {
        s["name"]: s for m in _messages(discover.stdout) if m["type"] == "CATALOG" for s in m["catalog"]["streams"]
    }
    assert {"models", "files"} <= set(streams), discover.stdout[-2000:]
    chosen = [streams["models"], streams["files"]]
    source_catalog = {
        "streams": [
            {"stream": s, "sync_mode": "full_refresh", "destination_sync_mode": "append_dedup", "primary_key": [["id"]]}
            for s in chosen
        ]
    }
    (tmp_path / "catalog.json").write_text(json.dumps(source_catalog))
    destination_config = tmp_path / "destination.json"
    destination_config.write_text(
        json.dumps(
            {
                "api_key": emulator.api_key,
                "base_url": emulator.base_url,
                "enrichment": {"mode": "embeddings", "fields": ["id", "name", "description", "filename"]},
                "output": {"type": "duckdb", "path": str(tmp_path / "pipe.duckdb")},
            }
        )
    )
    write = _pipe(tmp_path, source_config, tmp_path / "catalog.json", destination_config)
    out = _messages(write.stdout)
    assert any(m["type"] == "STATE" for m in out), "the destination must echo STATE once committed"
    assert not [m for m in out if m["type"] == "TRACE"], "no error expected"
    assert emulator.api_key not in write.stdout + write.stderr
    con = duckdb.connect(str(tmp_path / "pipe.duckdb"), read_only=True)
    try:
        files = con.execute("SELECT count(*), count(DISTINCT id), count(_mistral_embedding) FROM files").fetchone()
        models = con.execute("SELECT count(*), count(_mistral_embedding) FROM models").fetchone()
    finally:
        con.close()
    assert files[0] == files[1] == files[2] > 100, f"every file once, each embedded: {files}"
    assert models[0] == models[1] > 0


def test_write_does_its_whole_sync_without_importing_the_cdk(emulator, tmp_path):
    """`write` starts in a fraction of a second because it never loads the Airbyte CDK (about a
    second of imports), nor, when the cache answers everything, the tokenizer (half a second more);
    a stray import anywhere on the write path would bring that back."""
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "api_key": emulator.api_key,
                "base_url": emulator.base_url,
                "enrichment": {"mode": "embeddings", "fields": ["review"]},
                "output": {"type": "duckdb", "path": str(tmp_path / "out.duckdb")},
            }
        )
    )
    catalog = tmp_path / "catalog.json"
    catalog.write_text(
        json.dumps(
            {
                "streams": [
                    {
                        "stream": {
                            "name": "reviews",
                            "json_schema": {
                                "type": "object",
                                "properties": {"id": {"type": "integer"}, "review": {"type": "string"}},
                            },
                        },
                        "sync_mode": "full_refresh",
                        "destination_sync_mode": "append",
                    }
                ]
            }
        )
    )
    lines = "".join(
        json.dumps(m) + "\n"
        for m in (
            *(
                {
                    "type": "RECORD",
                    "record": {"stream": "reviews", "data": {"id": i, "review": f"text {i}"}, "emitted_at": 1},
                }
                for i in range(50)
            ),
            {
                "type": "STATE",
                "state": {
                    "type": "STREAM",
                    "stream": {"stream_descriptor": {"name": "reviews"}, "stream_state": {"n": 50}},
                },
            },
        )
    )
    probe = (
        "import sys; from destination_mistral.run import run; run(sys.argv[1:]); "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'airbyte_cdk'); "
        "print('CDK MODULES', len(loaded), loaded[:5], file=sys.stderr); "
        "print('TOKENIZER LOADED', 'mistral_common' in sys.modules, file=sys.stderr)"
    )

    def write():
        done = subprocess.run(
            [sys.executable, "-c", probe, "write", "--config", str(config), "--catalog", str(catalog)],
            input=lines,
            capture_output=True,
            text=True,
            env=_env(),
            cwd=tmp_path,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        states = [m for m in _messages(done.stdout) if m["type"] == "STATE"]
        assert states and states[-1]["state"]["destinationStats"]["recordCount"] == 50.0, (
            "the STATE leaves with its record count"
        )
        assert "CDK MODULES 0 []" in done.stderr, done.stderr[-500:]
        return done.stderr

    assert "TOKENIZER LOADED True" in write(), "new inputs are counted with Mistral's tokenizer"
    assert "TOKENIZER LOADED False" in write(), "a sync answered wholly by the cache never loads the tokenizer"


def test_a_route_the_api_stops_serving_leaves_an_overwritten_table_as_it_was(emulator, tmp_path):
    """The source skips agents when the API answers 404 for them, and reports the stream INCOMPLETE:
    the overwrite destination keeps the agents it has instead of replacing them with nothing."""
    source_config = tmp_path / "source.json"
    source_config.write_text(json.dumps({"api_key": emulator.api_key, "base_url": emulator.base_url}))
    schema = {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": ["null", "string"]}}}
    stream = {"name": "agents", "json_schema": schema, "supported_sync_modes": ["full_refresh"]}
    catalog = tmp_path / "catalog.json"
    catalog.write_text(
        json.dumps({"streams": [{"stream": stream, "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"}]})
    )
    destination_config = tmp_path / "destination.json"
    destination_config.write_text(
        json.dumps(
            {
                "api_key": emulator.api_key,
                "base_url": emulator.base_url,
                "enrichment": {"mode": "none"},
                "output": {"type": "duckdb", "path": str(tmp_path / "agents.duckdb")},
            }
        )
    )

    def agents() -> int:
        con = duckdb.connect(str(tmp_path / "agents.duckdb"), read_only=True)
        try:
            return con.execute("SELECT count(*) FROM agents").fetchone()[0]
        finally:
            con.close()

    _pipe(tmp_path, source_config, catalog, destination_config)
    held = agents()
    assert held > 0
    emulator.configure(absent_routes=["/v1/agents/pages"])
    try:
        _pipe(tmp_path, source_config, catalog, destination_config)
    finally:
        emulator.configure(absent_routes=[])
    assert agents() == held, "the skipped stream's table is kept"
