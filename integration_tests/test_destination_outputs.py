"""Where the output may go, end to end through `destination-mistral write` and `check`: a DuckDB file
that DuckDB 1.x (PyAirbyte's) can open, MotherDuck up to the connection attempt (this machine has no
network: the error must be clear and the token never shown), and local paths confined to /local in
the connector's container."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer, Status

from destination_mistral.destination import DestinationMistral
from destination_mistral.settings import LOCAL_ROOT_ENV
from integration_tests.test_pyairbyte import _pyairbyte_python
from tests.support.builders import catalog, configured_stream, messages_with_states, review, serialize

BIN = Path(sys.executable).parent
TOKEN = "md-token-SECRET-5521-abcdef"
READ_BACK = """
import duckdb, json, sys
con = duckdb.connect(sys.argv[1], read_only=True)
rows = con.execute("SELECT count(*), min(_airbyte_extracted_at)::VARCHAR FROM reviews").fetchone()
print(json.dumps({"version": duckdb.__version__, "rows": rows[0]}))
"""


def config_for(output: dict) -> dict:
    return {"api_key": "k-12345678", "base_url": "http://127.0.0.1:9", "enrichment": {"mode": "none"}, "output": output}


def run_write(tmp_path: Path, config: dict, env: dict | None = None) -> tuple[list[dict], str]:
    """`destination-mistral write` of five reviews; its stdout messages, and stdout and stderr as text."""
    config_path, catalog_path = tmp_path / "config.json", tmp_path / "catalog.json"
    config_path.write_text(json.dumps(config))
    catalog_path.write_text(json.dumps(ConfiguredAirbyteCatalogSerializer.dump(catalog(configured_stream()))))
    done = subprocess.run(
        [str(BIN / "destination-mistral"), "write", "--config", str(config_path), "--catalog", str(catalog_path)],
        input=serialize(messages_with_states(review(i) for i in range(5))).encode(),
        capture_output=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=tmp_path,
    )
    text = (done.stdout + done.stderr).decode(errors="replace")
    return [json.loads(line) for line in done.stdout.decode().splitlines() if line.startswith("{")], text


def trace_errors(messages: list[dict]) -> list[dict]:
    return [m["trace"]["error"] for m in messages if m["type"] == "TRACE" and m["trace"]["type"] == "ERROR"]


@pytest.fixture(autouse=True)
def offline_api(monkeypatch):
    """`check` reaches no API here: what is checked is the output."""
    import destination_mistral.destination as destination_module

    async def every_model_exists(settings):
        return None

    monkeypatch.setattr(destination_module, "_check_api", every_model_exists)


def check_message(config: dict) -> str | None:
    status = DestinationMistral().check(None, config)
    return None if status.status == Status.SUCCEEDED else status.message


# ---- DuckDB storage version -----------------------------------------------------------------------


def read_with_duckdb_1x(path: Path) -> dict | str:
    """What PyAirbyte's DuckDB (1.x) reads from the file, or its error's text."""
    done = subprocess.run(
        [str(_pyairbyte_python()), "-c", READ_BACK, str(path)], capture_output=True, text=True, timeout=120
    )
    return json.loads(done.stdout) if done.returncode == 0 else done.stderr.strip()


def test_a_new_duckdb_file_is_readable_by_duckdb_1x(tmp_path):
    out, _ = run_write(tmp_path, config_for({"type": "duckdb", "path": str(tmp_path / "out.duckdb")}))
    assert [m["type"] for m in out if m["type"] == "STATE"] == ["STATE"], trace_errors(out)
    found = read_with_duckdb_1x(tmp_path / "out.duckdb")
    assert isinstance(found, dict) and found["version"].startswith("1.") and found["rows"] == 5, found


def test_the_storage_version_is_configurable(tmp_path):
    output = {"type": "duckdb", "path": str(tmp_path / "latest.duckdb"), "storage_version": "latest"}
    run_write(tmp_path, config_for(output))
    import duckdb

    if duckdb.__version__.startswith("1."):
        pytest.skip("the installed DuckDB's newest format is readable by DuckDB 1.x")
    found = read_with_duckdb_1x(tmp_path / "latest.duckdb")
    assert isinstance(found, str) and "version number" in found, f"DuckDB 1.x should refuse the newest format: {found}"


def test_an_unknown_storage_version_is_a_config_error_naming_the_field(tmp_path):
    output = {"type": "duckdb", "path": str(tmp_path / "x.duckdb"), "storage_version": "v9.9.9"}
    message = check_message(config_for(output))
    assert message and "`output.storage_version`" in message and "v1.0.0" in message, message


# ---- MotherDuck -----------------------------------------------------------------------------------


def test_motherduck_is_tried_and_its_failure_is_clear_without_the_token(tmp_path):
    config = config_for({"type": "duckdb", "path": "md:my_database", "motherduck_token": TOKEN})
    message = check_message(config)
    assert message and "MotherDuck" in message and "md:my_database" in message, message
    assert TOKEN not in message
    out, text = run_write(tmp_path, config)
    failures = trace_errors(out)
    assert failures and "MotherDuck" in failures[0]["message"], failures
    assert not [m for m in out if m["type"] == "STATE"], "nothing was stored, so no STATE leaves"
    assert TOKEN not in text, "the token leaked"


@pytest.mark.parametrize(
    "output, field",
    [
        ({"type": "duckdb", "path": "md:my_database"}, "`output.motherduck_token`"),
        ({"type": "duckdb", "path": f"md:my_database?motherduck_token={TOKEN}"}, "`output.motherduck_token`"),
    ],
    ids=["token_missing", "token_in_path"],
)
def test_motherduck_needs_its_token_in_the_secret_field(output, field):
    message = check_message(config_for(output))
    assert message and field in message and TOKEN not in message, message


# ---- /local in the container ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "output, field",
    [
        ({"type": "duckdb", "path": "/tmp/elsewhere/out.duckdb"}, "`output.path`"),
        ({"type": "duckdb", "path": "../out.duckdb"}, "`output.path`"),
        ({"type": "jsonl", "directory": "/var/tmp/out"}, "`output.directory`"),
    ],
    ids=["duckdb_elsewhere", "duckdb_escaping", "jsonl_elsewhere"],
)
def test_in_the_container_a_path_outside_local_is_refused_naming_the_host_mount(tmp_path, monkeypatch, output, field):
    root = tmp_path / "local"
    root.mkdir()
    monkeypatch.setenv(LOCAL_ROOT_ENV, str(root))
    message = check_message(config_for(output))
    assert message and field in message and "/tmp/airbyte_local" in message, message
    out, _ = run_write(tmp_path, config_for(output), env={LOCAL_ROOT_ENV: str(root)})
    failures = trace_errors(out)
    assert failures and failures[0]["failure_type"] == "config_error" and field in failures[0]["message"], failures


def test_in_the_container_a_relative_path_is_taken_under_local(tmp_path):
    root = tmp_path / "local"
    root.mkdir()
    out, _ = run_write(
        tmp_path, config_for({"type": "duckdb", "path": "sub/out.duckdb"}), env={LOCAL_ROOT_ENV: str(root)}
    )
    assert [m["type"] for m in out if m["type"] == "STATE"] == ["STATE"], trace_errors(out)
    assert (root / "sub" / "out.duckdb").exists()


def test_outside_the_container_paths_are_not_confined(tmp_path, monkeypatch):
    monkeypatch.delenv(LOCAL_ROOT_ENV, raising=False)
    output = {"type": "jsonl", "directory": str(tmp_path / "anywhere")}
    assert check_message(config_for(output)) is None, "no /local rule outside the container"
    out, _ = run_write(tmp_path, config_for(output), env={LOCAL_ROOT_ENV: ""})
    assert [m["type"] for m in out if m["type"] == "STATE"] == ["STATE"], trace_errors(out)
