"""Runs destination-mistral as the platform does (a `write` command with a config file, a catalog
file and stdin) and captures everything it produced."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import orjson
from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer

from tests.support.builders import catalog as build_catalog
from tests.support.builders import configured_stream

REPO_ROOT = Path(__file__).resolve().parents[2]
# Distinctive, so that a hit can only be a leak: the key, a marker inside every record's text and a
# marker inside every prompt template.
LEAK_KEY = "sk-LEAKCHECK-" + secrets.token_hex(8)
RECORD_MARK = "RECMARK" + secrets.token_hex(4)
PROMPT_MARK = "PROMPTMARK" + secrets.token_hex(4)


@dataclass
class Capture:
    """What one run of the connector produced."""

    label: str
    stdout: str = ""
    stderr: str = ""
    returncode: int | None = None
    files: list[Path] = field(default_factory=list)

    @property
    def messages(self) -> list[dict[str, Any]]:
        out = []
        for line in self.stdout.splitlines():
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append(value)
        return out

    @property
    def states(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == "STATE"]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [
            m["trace"]["error"] for m in self.messages if m.get("type") == "TRACE" and m["trace"].get("type") == "ERROR"
        ]

    def log_text(self) -> str:
        """Everything a person reads: log and trace messages, and stderr (not the data channel)."""
        lines = [line for line in self.stdout.splitlines() if '"type":"RECORD"' not in line.replace(" ", "")]
        return "\n".join(lines) + "\n" + self.stderr

    def describe(self) -> str:
        return (
            f"{self.label}: rc={self.returncode}\n"
            f"stdout tail: {self.stdout[-1500:]}\n"
            f"stderr tail: {self.stderr[-1500:]}"
        )


def state_line(position: int, stream: str = "reviews") -> bytes:
    return (
        orjson.dumps(
            {
                "type": "STATE",
                "state": {
                    "type": "STREAM",
                    "stream": {"stream_descriptor": {"name": stream}, "stream_state": {"position": position}},
                },
            }
        )
        + b"\n"
    )


def record_line(data: Any, stream: str = "reviews", namespace: str | None = None) -> bytes:
    record: dict[str, Any] = {"stream": stream, "data": data, "emitted_at": 1_700_000_000_000}
    if namespace:
        record["namespace"] = namespace
    # The standard encoder: orjson refuses the deeply nested records some cases need.
    return json.dumps({"type": "RECORD", "record": record}).encode() + b"\n"


def review(i: int, text: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": i,
        "product": f"product-{i % 5}",
        "rating": 1 + i % 5,
        "review": text if text is not None else f"{RECORD_MARK} review {i}: the battery and screen number {i}",
        "tags": ["t", str(i % 3)],
        "reviewed_at": "2025-03-01T10:00:00Z",
        **extra,
    }


def complete_line(stream: str = "reviews", namespace: str | None = None) -> bytes:
    """The stream status the platform sends when the source has read a stream whole."""
    descriptor: dict[str, Any] = {"name": stream, **({"namespace": namespace} if namespace else {})}
    return (
        orjson.dumps(
            {
                "type": "TRACE",
                "trace": {
                    "type": "STREAM_STATUS",
                    "emitted_at": 1_700_000_000_000,
                    "stream_status": {"stream_descriptor": descriptor, "status": "COMPLETE"},
                },
            }
        )
        + b"\n"
    )


def input_lines(
    records: Iterable[dict[str, Any]], every: int = 10, stream: str = "reviews", start: int = 0, completed: bool = True
) -> list[bytes]:
    """Records with a STATE after every `every` of them (positions count from `start`) and, unless
    the source is to fail, the stream's COMPLETE status last."""
    lines, count = [], start
    for data in records:
        lines.append(record_line(data, stream))
        count += 1
        if count % every == 0:
            lines.append(state_line(count, stream))
    if count % every:
        lines.append(state_line(count, stream))
    if completed:
        lines.append(complete_line(stream))
    return lines


def catalog_dict(mode: str = "append_dedup", *streams: str, sync_id: int | None = None) -> dict[str, Any]:
    configured = build_catalog(
        *[configured_stream(name, mode=mode, sync_id=sync_id) for name in (streams or ("reviews",))]
    )
    return ConfiguredAirbyteCatalogSerializer.dump(configured)


def chat_config(base_url: str, out: Path, **extra: Any) -> dict[str, Any]:
    return {
        "api_key": LEAK_KEY,
        "base_url": base_url,
        "model": "mistral-small-latest",
        "enrichment": {"mode": "chat", "prompt_template": PROMPT_MARK + " {{ review }}", "temperature": 0},
        "output": {"type": "duckdb", "path": str(out)},
        **extra,
    }


def embed_config(base_url: str, out: Path, **extra: Any) -> dict[str, Any]:
    return {
        "api_key": LEAK_KEY,
        "base_url": base_url,
        "enrichment": {"mode": "embeddings", "fields": ["review"]},
        "output": {"type": "duckdb", "path": str(out)},
        **extra,
    }


def _write_files(workdir: Path, config: Any, catalog: Any) -> tuple[Path, Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    config_path, catalog_path = workdir / "config.json", workdir / "catalog.json"
    config_path.write_bytes(config if isinstance(config, bytes) else orjson.dumps(config))
    catalog_path.write_bytes(catalog if isinstance(catalog, bytes) else orjson.dumps(catalog))
    return config_path, catalog_path


INPUT_FILES = ("config.json", "catalog.json")


def output_files(*roots: Path) -> list[Path]:
    """Every file under `roots` except the inputs the platform hands over (the config holds the key)."""
    found = []
    for root in roots:
        if root.is_file():
            found.append(root)
        elif root.is_dir():
            found += [p for p in root.rglob("*") if p.is_file() and p.name not in INPUT_FILES]
    return found


@contextlib.contextmanager
def _isolated_logging():
    """The connector configures the `airbyte` logger and the excepthook for its process; in process
    that must not outlive the run."""
    airbyte = logging.getLogger("airbyte")
    saved = (list(airbyte.handlers), airbyte.level, airbyte.propagate, sys.excepthook)
    try:
        yield
    finally:
        airbyte.handlers[:] = saved[0]
        airbyte.setLevel(saved[1])
        airbyte.propagate = saved[2]
        sys.excepthook = saved[3]


def write_in_process(label: str, workdir: Path, config: Any, catalog: Any, lines: Iterable[bytes]) -> Capture:
    """`destination-mistral write` in this process, with the entry point's own error handling (the
    uncaught-exception hook that turns any exception into a TRACE message)."""
    from destination_mistral.destination import DestinationMistral

    config_path, catalog_path = _write_files(workdir, config, catalog)
    stdin = io.TextIOWrapper(io.BytesIO(b"".join(lines)), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with _isolated_logging(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        saved_stdin = sys.stdin
        sys.stdin = stdin
        try:
            DestinationMistral().run(["write", "--config", str(config_path), "--catalog", str(catalog_path)])
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException as error:  # what the process would do: the hook prints a TRACE
            sys.excepthook(type(error), error, error.__traceback__)
            code = 1
        finally:
            sys.stdin = saved_stdin
    return Capture(label, out.getvalue(), err.getvalue(), code, output_files(workdir))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


def destination_command() -> list[str]:
    script = Path(sys.executable).with_name("destination-mistral")
    return [str(script)] if script.exists() else [sys.executable, "-m", "destination_mistral"]


def write_subprocess(
    label: str,
    workdir: Path,
    config: Any,
    catalog: Any,
    lines: list[bytes],
    kill_when: Callable[[dict[str, Any], int], bool] | None = None,
    timeout: float = 60,
) -> Capture:
    """A real `destination-mistral write` process. `kill_when(message, states_so_far)` is asked after
    every stdout message; when it says so, the process gets SIGKILL at once (as when a container is
    killed), with whatever it had in flight."""
    config_path, catalog_path = _write_files(workdir, config, catalog)
    process = subprocess.Popen(
        [*destination_command(), "write", "--config", str(config_path), "--catalog", str(catalog_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
        cwd=workdir,
    )

    def feed() -> None:
        try:
            for line in lines:
                process.stdin.write(line)
            process.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass  # killed while reading: exactly what a crash looks like to the platform

    errors: list[bytes] = []
    drain = threading.Thread(target=lambda: errors.append(process.stderr.read()), daemon=True)
    writer = threading.Thread(target=feed, daemon=True)
    drain.start()
    writer.start()
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    stdout: list[str] = []
    states = 0
    try:
        for raw in process.stdout:
            text = raw.decode("utf-8", "replace")
            stdout.append(text)
            try:
                message = json.loads(text)
            except ValueError:
                continue
            if isinstance(message, dict) and message.get("type") == "STATE":
                states += 1
            if kill_when is not None and isinstance(message, dict) and kill_when(message, states):
                os.kill(process.pid, signal.SIGKILL)
                break
        process.wait(30)
    finally:
        timer.cancel()
        if process.poll() is None:
            process.kill()
            process.wait(10)
    rest = process.stdout.read().decode("utf-8", "replace")
    stdout.append(rest)
    drain.join(10)
    writer.join(10)
    return Capture(
        label,
        "".join(stdout),
        (errors[0] if errors else b"").decode("utf-8", "replace"),
        process.returncode,
        output_files(workdir),
    )


def query(path: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def replay_after_last_state(lines: list[bytes], capture: Capture) -> list[bytes]:
    """What the platform sends to the next attempt: the input after the last STATE the destination
    echoed (all of it when none was echoed)."""
    emitted = [m["state"]["stream"]["stream_state"]["position"] for m in capture.states]
    if not emitted:
        return list(lines)
    last = emitted[-1]
    for index, line in enumerate(lines):
        if line == state_line(last):
            return lines[index + 1 :]
    raise AssertionError(f"the echoed STATE position {last} is not in the input")


def api_calls(emulator, route: str) -> dict[str, int]:
    return dict(emulator.stats()["routes"].get(route, {}))


def leaks(captures: Iterable[Capture], needles: dict[str, str], *, logs_only: bool = False) -> list[str]:
    """Where any needle appears: '<label>: <needle name> in <place>'."""
    hits = []
    for capture in captures:
        places = {"logs": capture.log_text()} if logs_only else {"stdout": capture.stdout, "stderr": capture.stderr}
        for place, text in places.items():
            for name, needle in needles.items():
                if needle in text:
                    hits.append(f"{capture.label}: {name} in {place}")
        if not logs_only:
            for path in capture.files:
                data = path.read_bytes()
                # DuckDB compresses strings on disk: its tables are searched through a query too.
                text = duckdb_text(path) if path.suffix == ".duckdb" else ""
                for name, needle in needles.items():
                    if needle.encode() in data or needle in text:
                        hits.append(f"{capture.label}: {name} in file {path.name}")
    return hits


def duckdb_text(path: Path) -> str:
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return ""
    try:
        tables = con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()
        return "\n".join(str(con.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall()) for schema, table in tables)
    finally:
        con.close()


@dataclass(frozen=True)
class Scenario:
    """A named run that returns everything it captured, so the secrets test can run it again."""

    name: str
    run: Callable[[Path], list[Capture]]
