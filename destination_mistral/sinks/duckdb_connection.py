"""Opening a DuckDB file for the destination (the DuckDB output, or the JSONL output's cache): the
errors that make a config error, and the settings a sync runs with (UTC, threads, buffer pool,
checkpoints, compression). Also the check that `output.path` can be written."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from destination_mistral.settings import OutputSettings
from mistral_connection.errors import config_error

MEMORY_LIMIT = "192MB"
ROOMY_MEMORY_LIMIT = "4GB"


def connect(path: Path):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(path))
    except duckdb.IOException as error:
        text = str(error)
        if "lock" in text.lower():
            raise config_error(
                f"The DuckDB file {str(path)!r} is open in another process (DuckDB allows one writer): close it and "
                "retry."
            ) from None
        raise config_error(
            f"`output.path` {str(path)!r} cannot be opened as a DuckDB file: {text.splitlines()[0]}"
        ) from None
    except (OSError, duckdb.Error) as error:
        raise config_error(f"`output.path` {str(path)!r} cannot be written: {str(error).splitlines()[0]}") from None
    con.execute("SET TimeZone = 'UTC'")
    # Half the cores, at least one: the sync's own appends and joins gain little from more, and the
    # pipeline (and, on a shared machine, the source and the API) need the rest. On 2 cores, one
    # DuckDB thread made a 20,000-vector sync 15% faster than two.
    con.execute(f"SET threads = {max(1, (os.cpu_count() or 2) // 2)}")
    # DuckDB's buffer pool defaults to 80% of RAM; the destination shares its machine with the
    # source, and pages it evicts are re-read from the file when needed.
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    # At the default 16 MB the write-ahead log fills every commit or two (a vector is 4 KB, written
    # to the table and to the cache), and each checkpoint rewrites the cache's key index and the
    # partly filled row groups again. Committed transactions are durable in the log either way.
    con.execute("SET checkpoint_threshold = '256MB'")
    # Embeddings are dense floats that no method compresses, yet at each checkpoint DuckDB tries
    # them all: ALP on every FLOAT[n] segment and dict_fsst on every 4 KB cache blob. Measured on
    # 20,000 vectors of 1024 floats, closing the file took 1.3 s with them and 0.4 s without, for a
    # file 2% larger. Text columns keep dictionary and FSST compression.
    for methods in ("alp,alprd,dict_fsst", "alp,alprd"):  # dict_fsst exists from DuckDB 1.3
        try:
            con.execute(f"SET disabled_compression_methods = '{methods}'")
            break
        except duckdb.Error:
            continue
    return con


def check_writable(output: OutputSettings) -> None:
    con = connect(output.path)
    try:
        con.execute("CREATE TABLE IF NOT EXISTS _mistral_check (x INTEGER)")
        con.execute("DROP TABLE _mistral_check")
    except Exception as error:
        raise config_error(
            f"`output.path` {str(output.path)!r} is not writable: {str(error).splitlines()[0]}"
        ) from None
    finally:
        con.close()
