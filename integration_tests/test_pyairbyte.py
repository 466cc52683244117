"""Both connectors under PyAirbyte, through the documented example (examples/pyairbyte_sync.py):
source-mistral reads the emulator into PyAirbyte's default DuckDB cache, destination-mistral writes
that cache to a DuckDB file, embedding two streams.

PyAirbyte cannot share this project's virtualenv: `airbyte` 0.71 pins duckdb <1.5, rich <14,
protobuf <7 and cryptography <47, and installing it would downgrade what the project runs with. It
runs from a venv of its own (PyAirbyte's recommended layout anyway: connectors are separate
executables), made here on first use and kept in out/ (about 100 s once; later runs reuse it).
Set PYAIRBYTE_PYTHON to use an interpreter that already has `airbyte`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from airbyte_cdk.models import SyncMode
from airbyte_cdk.test.catalog_builder import CatalogBuilder
from airbyte_cdk.test.entrypoint_wrapper import read

from mistral_emulator import EmulatorServer, EmulatorSettings
from source_mistral.source import SourceMistral

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "pyairbyte_sync.py"
PYAIRBYTE_VENV = REPO / "out" / "pyairbyte-venv"
PYAIRBYTE_REQUIREMENT = "airbyte>=0.71,<0.72"
BIN = Path(sys.executable).parent
API_KEY = "pyairbyte-test-key"
EMBEDDED = {"models", "agents"}


def _has_pyairbyte(python: Path) -> bool:
    return (
        python.exists() and subprocess.run([str(python), "-c", "import airbyte"], capture_output=True).returncode == 0
    )


def _pyairbyte_python() -> Path:
    override = os.environ.get("PYAIRBYTE_PYTHON")
    if override:
        if not _has_pyairbyte(Path(override)):
            pytest.fail(f"PYAIRBYTE_PYTHON={override} has no `airbyte` (PyAirbyte) installed")
        return Path(override)
    # `make test` builds this venv before pytest starts, so parallel workers never race to create it.
    python = PYAIRBYTE_VENV / "bin" / "python"
    if _has_pyairbyte(python):
        return python
    try:
        subprocess.run([sys.executable, "-m", "venv", str(PYAIRBYTE_VENV)], check=True, capture_output=True, text=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", PYAIRBYTE_REQUIREMENT],
            check=True,
            capture_output=True,
            text=True,
            timeout=900,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        detail = (getattr(error, "stderr", "") or "").strip().splitlines()[-1:] or [str(error)]
        pytest.fail(
            f"PyAirbyte (`pip install '{PYAIRBYTE_REQUIREMENT}'` into {PYAIRBYTE_VENV}) "
            f"could not be installed: {detail[0]}"
        )
    return python


@pytest.fixture(scope="module")
def small_emulator():
    # Small but with several pages per list: the point is the PyAirbyte wiring, not volume.
    settings = EmulatorSettings(seed=11, files=60, batch_jobs=20, agents=25, fine_tuning_jobs=5)
    with EmulatorServer(api_key=API_KEY, settings=settings) as server:
        yield server


@pytest.fixture(scope="module")
def example_run(small_emulator, tmp_path_factory):
    python = _pyairbyte_python()
    workdir = tmp_path_factory.mktemp("pyairbyte")
    for folder in ("tmp", "logs"):  # PyAirbyte writes into these but does not create them
        (workdir / folder).mkdir()
    env = dict(
        os.environ,
        MISTRAL_API_KEY=API_KEY,
        DO_NOT_TRACK="1",
        AIRBYTE_OFFLINE_MODE="1",
        AIRBYTE_CACHE_ROOT=str(workdir / "cache"),
        AIRBYTE_TEMP_DIR=str(workdir / "tmp"),
        AIRBYTE_LOGGING_ROOT=str(workdir / "logs"),
    )
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [
            str(python),
            str(EXAMPLE),
            "--connectors-bin",
            str(BIN),
            "--base-url",
            small_emulator.base_url,
            "--workdir",
            str(workdir),
            "--json",
        ],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"the example failed:\n{output[-4000:]}"
    assert API_KEY not in output, "the API key must never be printed"
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    return workdir, summary


@pytest.fixture(scope="module")
def direct_counts(small_emulator) -> dict[str, int]:
    """The same account read by the source in-process, with no PyAirbyte in between."""
    config = {"api_key": API_KEY, "base_url": small_emulator.base_url, "page_size": 50}
    discovered = [s.name for s in SourceMistral(config=config, catalog=None, state=None).streams(config)]
    builder = CatalogBuilder()
    for name in discovered:
        builder.with_stream(name, SyncMode.full_refresh)
    catalog = builder.build()
    output = read(SourceMistral(config=config, catalog=catalog, state=None), config, catalog)
    assert not output.errors, output.get_formatted_error_message()
    counts = {name: 0 for name in discovered}
    for message in output.records:
        counts[message.record.stream] += 1
    return counts


def test_source_reads_every_stream_into_the_default_duckdb_cache(example_run, direct_counts):
    workdir, summary = example_run
    cache = Path(summary["cache_path"])
    assert cache.is_relative_to(workdir), f"the default cache must follow AIRBYTE_CACHE_ROOT: {cache}"
    assert summary["read_counts"] == direct_counts, "PyAirbyte must cache exactly what the source reads"
    assert summary["read_counts"]["files"] == 60 and summary["read_counts"]["batch_jobs"] == 20
    assert summary["read_counts"]["agents"] == 25, "agents span several cursor pages"
    con = duckdb.connect(str(cache), read_only=True)
    try:
        for stream, expected in direct_counts.items():
            (rows,) = con.execute(f'SELECT count(*) FROM main."{stream}"').fetchone()
            assert rows == expected, f"{stream}: {rows} rows in the cache, the source read {expected}"
    finally:
        con.close()


def test_destination_writes_every_cached_record_and_embeds_the_chosen_streams(example_run, direct_counts):
    workdir, summary = example_run
    output = Path(summary["output_path"])
    assert output.is_file() and output.is_relative_to(workdir)
    con = duckdb.connect(str(output), read_only=True)
    try:
        for stream, expected in direct_counts.items():
            (rows,) = con.execute(f'SELECT count(*) FROM main."{stream}"').fetchone()
            assert rows == expected, f"{stream}: {rows} rows written, {expected} read"
        for stream in EMBEDDED:
            rows, vectors, errors, dims = con.execute(
                "SELECT count(*), count(_mistral_embedding), count(_mistral_error), max(len(_mistral_embedding)) "
                f'FROM main."{stream}"'
            ).fetchone()
            assert vectors == rows and errors == 0, f"{stream}: {vectors}/{rows} embedded, {errors} errors"
            assert dims == 1024, f"{stream}: mistral-embed vectors have 1024 dimensions, got {dims}"
    finally:
        con.close()
    assert {name: v["rows"] for name, v in summary["written"].items()} == direct_counts


def test_example_counts_requests_the_emulator_served(example_run, small_emulator):
    stats = small_emulator.stats()["routes"]
    embedded = stats.get("POST /v1/embeddings", {})
    assert embedded.get("200"), f"the destination embedded through the emulator: {stats}"
