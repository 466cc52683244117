"""Run source-mistral and destination-mistral under PyAirbyte.

1. source-mistral reads a Mistral account into PyAirbyte's default DuckDB cache;
2. destination-mistral takes every stream from that cache (no second read of the API), embeds the
   `models` and `agents` records with mistral-embed, and writes all of it to a DuckDB file.

By default the account is the bundled Mistral emulator, started here on a free loopback port, so
the script needs no key and spends no tokens. `--base-url https://api.mistral.ai` with
MISTRAL_API_KEY set runs the same pipeline against the real API.

PyAirbyte and the connectors live in separate virtualenvs, as PyAirbyte recommends (their
dependency pins differ): install the connectors once (`pip install .` in this repository, or
`make install`) and PyAirbyte in another venv (`pip install airbyte`), then:

    /path/to/pyairbyte-venv/bin/python examples/pyairbyte_sync.py --connectors-bin .venv/bin

`--pip-url /path/to/airbyte-mistral` instead lets PyAirbyte install the connectors itself, each in
a venv of its own (slower: two full installs).

The script sets AIRBYTE_OFFLINE_MODE=1 before importing PyAirbyte: without it, PyAirbyte refuses to
run any connector, a local executable included, when Airbyte's registry cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EMULATOR_KEY = "pyairbyte-example-key"  # the emulator accepts the key it was started with


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--connectors-bin",
        type=Path,
        default=None,
        help="directory holding source-mistral, destination-mistral and mistral-emulator "
        "(default: next to `source-mistral` on PATH, else this repository's .venv/bin)",
    )
    p.add_argument(
        "--pip-url", default=None, help="let PyAirbyte pip-install the connectors from this URL or path instead"
    )
    p.add_argument(
        "--base-url",
        default=None,
        help="a running Mistral API (key from $MISTRAL_API_KEY); default: start the emulator",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=REPO / "out" / "pyairbyte",
        help="where the PyAirbyte cache and the destination's DuckDB file go",
    )
    p.add_argument("--files", type=int, default=60, help="files in the emulator's account")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    return p.parse_args(argv)


def connectors_bin(arg: Path | None) -> Path:
    if arg is not None:
        return arg.resolve()
    found = shutil.which("source-mistral")
    return Path(found).resolve().parent if found else REPO / ".venv" / "bin"


class Emulator:
    """The emulator as its own process: PyAirbyte's venv does not have the project installed."""

    def __init__(self, bin_dir: Path, files: int) -> None:
        self.cmd = [
            str(bin_dir / "mistral-emulator"),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--api-key",
            EMULATOR_KEY,
            "--files",
            str(files),
            "--batch-jobs",
            "20",
            "--agents",
            "12",
            "--fine-tuning-jobs",
            "5",
        ]
        self.proc: subprocess.Popen | None = None
        self.base_url = ""

    def __enter__(self) -> Emulator:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                self.base_url = match.group(1)
                return self
            if not line and self.proc.poll() is not None:
                break
        self.proc.kill()
        raise RuntimeError(f"mistral-emulator did not start ({' '.join(self.cmd[:1])})")

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def run(args: argparse.Namespace, base_url: str, api_key: str, bin_dir: Path) -> dict:
    # Read by PyAirbyte at import time, so set before it. PyAirbyte looks every connector up in
    # Airbyte's registry before running it, a local executable too; these connectors are not in it,
    # and where the registry cannot be reached get_source/get_destination raise
    # AirbyteConnectorRegistryError instead of running them. Offline mode skips that lookup (and,
    # like DO_NOT_TRACK, sends no usage telemetry); it is set whatever the environment says, since
    # the lookup can never find these connectors. The default cache then lives under --workdir.
    os.environ["AIRBYTE_OFFLINE_MODE"] = "1"
    os.environ.setdefault("AIRBYTE_CACHE_ROOT", str(args.workdir / "cache"))
    os.environ.setdefault("DO_NOT_TRACK", "1")
    import airbyte as ab

    if args.pip_url:
        # PyAirbyte creates the connectors' venvs with the `uv` it depends on, looked up on PATH:
        # put this interpreter's bin first, so running it by path (not activated) works.
        os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

    def install(name: str) -> dict:
        if args.pip_url:
            return {"pip_url": args.pip_url}
        return {"local_executable": str(bin_dir / name)}

    credentials = {"api_key": api_key, "base_url": base_url, "model": "mistral-small-latest"}

    source = ab.get_source("source-mistral", config=dict(credentials, page_size=50), **install("source-mistral"))
    source.check()
    source.select_all_streams()
    cache = ab.get_default_cache()
    started = time.monotonic()
    result = source.read(cache=cache)
    read_seconds = time.monotonic() - started
    counts = {name: len(dataset) for name, dataset in result.streams.items()}
    print(f"source-mistral -> PyAirbyte cache {cache.db_path}: {sum(counts.values())} records in {read_seconds:.1f}s")
    for name, count in sorted(counts.items()):
        print(f"  {name:<20} {count:>6}")

    output = args.workdir / "mistral_enriched.duckdb"
    output.unlink(missing_ok=True)
    # Every stream of the read is written; only models and agents are worth embedding, so the
    # default enrichment copies records unchanged and two stream overrides embed those.
    embedded = {"models": ["name", "description"], "agents": ["name", "description", "instructions"]}
    destination = ab.get_destination(
        "destination-mistral",
        config=dict(
            credentials,
            enrichment={"mode": "none"},
            stream_overrides=[
                {"stream_name": name, "enrichment": {"mode": "embeddings", "model": "mistral-embed", "fields": fields}}
                for name, fields in embedded.items()
            ],
            output={"type": "duckdb", "path": str(output)},
        ),
        **install("destination-mistral"),
    )
    destination.check()
    started = time.monotonic()
    # From the cache: the API is not read a second time.
    destination.write(result)
    write_seconds = time.monotonic() - started
    print(
        f"destination-mistral -> {output}: {len(counts)} streams written in {write_seconds:.1f}s, "
        f"{' and '.join(embedded)} embedded"
    )

    landed = count_rows(bin_dir, output, sorted(counts), embedded=list(embedded))
    for name in sorted(counts):
        vectors = f", {landed[name]['with_vector']} with a vector" if name in embedded else ""
        print(f"  {name:<20} {landed[name]['rows']:>6} rows{vectors}")
    return {"cache_path": str(cache.db_path), "read_counts": counts, "output_path": str(output), "written": landed}


# The destination writes with its own DuckDB version, which may be newer than the one PyAirbyte
# pins: read the file back with the destination's interpreter so that versions never have to agree.
COUNT_ROWS = """
import duckdb, json, sys
path, tables, embedded = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
con = duckdb.connect(path, read_only=True)
counts = {}
for table in tables:
    vector = "count(_mistral_embedding)" if table in embedded else "0"
    rows, with_vector = con.execute(f'SELECT count(*), {vector} FROM main."{table}"').fetchone()
    counts[table] = {"rows": rows, "with_vector": with_vector}
print(json.dumps(counts))
"""


def count_rows(bin_dir: Path, path: Path, tables: list[str], embedded: list[str]) -> dict:
    python = bin_dir / "python"
    cmd = [
        str(python if python.exists() else sys.executable),
        "-c",
        COUNT_ROWS,
        str(path),
        json.dumps(tables),
        json.dumps(embedded),
    ]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    bin_dir = connectors_bin(args.connectors_bin)
    if args.base_url:
        api_key = os.environ.get("MISTRAL_API_KEY")
        if not api_key:
            print("--base-url needs MISTRAL_API_KEY in the environment.", file=sys.stderr)
            return 2
        summary = run(args, args.base_url, api_key, bin_dir)
    else:
        with Emulator(bin_dir, args.files) as emulator:
            print(f"mistral-emulator on {emulator.base_url}")
            summary = run(args, emulator.base_url, EMULATOR_KEY, bin_dir)
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
