"""The README's main command (`make demo`): sync a Mistral account with source-mistral, then enrich
the bundled product reviews with destination-mistral twice (a json_schema chat extraction and
embeddings) and query the DuckDB file, then search it by meaning with `destination-mistral search`.
Both connectors run as real subprocesses, as the platform runs them.

    python tools/demo.py                                      # against an emulator started here
    python tools/demo.py --base-url https://api.mistral.ai    # the key from $MISTRAL_API_KEY
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORK = REPO / "out" / "demo"
EMULATOR_KEY = "demo-key"
SAMPLE = REPO / "sample_data" / "product_reviews.jsonl"
CATALOG = REPO / "sample_data" / "product_reviews_catalog.json"
QUERY = "battery life"

EXTRACTION_SCHEMA = {
    "type": "object",
    "properties": {
        "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
        "topics": {
            "type": "array",
            "items": {"type": "string", "enum": ["battery", "shipping", "screen", "sound", "build quality", "other"]},
        },
        "summary": {"type": "string"},
    },
    "required": ["sentiment", "topics", "summary"],
    "additionalProperties": False,
}


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)


def _messages(stdout: str):
    for line in stdout.splitlines():
        if line.startswith("{"):
            yield json.loads(line)


# ---- source-mistral ---------------------------------------------------------------------------------


def sync_source(base_url: str, api_key: str, work: Path) -> None:
    config = work / "source_config.json"
    config.write_text(
        json.dumps({"api_key": api_key, "model": "mistral-small-latest", "base_url": base_url + "/v1/chat/completions"})
    )
    print(f"== source-mistral against {base_url} (base_url pasted as a full chat endpoint)")

    check = _run([str(BIN / "source-mistral"), "check", "--config", str(config)])
    status = next(m["connectionStatus"] for m in _messages(check.stdout) if m["type"] == "CONNECTION_STATUS")
    print(f"check: {status['status']}")
    if status["status"] != "SUCCEEDED":
        raise SystemExit(f"check failed: {status.get('message')}")

    discover = _run([str(BIN / "source-mistral"), "discover", "--config", str(config)])
    catalog = next(m["catalog"] for m in _messages(discover.stdout) if m["type"] == "CATALOG")
    configured = {
        "streams": [
            {
                "stream": stream,
                "sync_mode": "incremental" if "incremental" in stream["supported_sync_modes"] else "full_refresh",
                "destination_sync_mode": "append_dedup",
                "primary_key": [["id"]],
                "cursor_field": stream.get("default_cursor_field", []),
            }
            for stream in catalog["streams"]
        ]
    }
    catalog_path = work / "source_catalog.json"
    catalog_path.write_text(json.dumps(configured))
    print(f"discover: {', '.join(s['name'] for s in catalog['streams'])}")

    started = time.perf_counter()
    read = _run([str(BIN / "source-mistral"), "read", "--config", str(config), "--catalog", str(catalog_path)])
    elapsed = time.perf_counter() - started
    if read.returncode != 0:
        raise SystemExit(f"read failed (exit {read.returncode}):\n{read.stdout[-2000:]}")
    counts: Counter[str] = Counter()
    states = {}
    samples = {}
    for message in _messages(read.stdout):
        if message["type"] == "RECORD":
            stream = message["record"]["stream"]
            counts[stream] += 1
            samples.setdefault(stream, message["record"]["data"])
        elif message["type"] == "STATE" and "stream" in message["state"]:
            descriptor = message["state"]["stream"]
            states[descriptor["stream_descriptor"]["name"]] = descriptor.get("stream_state")
    (work / "source_records.jsonl").write_text(read.stdout)
    print(f"read: {sum(counts.values())} records in {elapsed:.1f} s")
    print(f"  {'stream':<18} {'records':>8}  first record / state")
    for stream in [s["name"] for s in catalog["streams"]]:
        sample = samples.get(stream, {})
        summary = ", ".join(f"{k}={sample[k]}" for k in ("id", "status", "filename", "name") if k in sample)
        print(f"  {stream:<18} {counts[stream]:>8}  {summary[:70]}")
        if states.get(stream):
            print(f"  {'':<18} {'':>8}  state {json.dumps(states[stream])}")


# ---- destination-mistral ----------------------------------------------------------------------------


def _input_messages(records: list[dict], namespace: str) -> str:
    now = int(time.time() * 1000)
    lines = [
        json.dumps(
            {
                "type": "RECORD",
                "record": {"stream": "product_reviews", "namespace": namespace, "data": r, "emitted_at": now},
            }
        )
        for r in records
    ]
    lines.append(
        json.dumps(
            {
                "type": "STATE",
                "state": {
                    "type": "STREAM",
                    "stream": {
                        "stream_descriptor": {"name": "product_reviews", "namespace": namespace},
                        "stream_state": {"last_id": records[-1]["id"]},
                    },
                },
            }
        )
    )
    return "\n".join(lines) + "\n"


def _catalog(namespace: str) -> dict:
    catalog = json.loads(CATALOG.read_text())
    for stream in catalog["streams"]:
        stream["stream"]["namespace"] = namespace
    return catalog


def _write(work: Path, name: str, config: dict, namespace: str, records: list[dict]) -> dict[str, Any]:
    config_path = work / f"destination_{name}_config.json"
    catalog_path = work / f"destination_{name}_catalog.json"
    config_path.write_text(json.dumps(config, indent=2))
    catalog_path.write_text(json.dumps(_catalog(namespace)))
    started = time.perf_counter()
    result = subprocess.run(
        [str(BIN / "destination-mistral"), "write", "--config", str(config_path), "--catalog", str(catalog_path)],
        input=_input_messages(records, namespace),
        capture_output=True,
        text=True,
        check=False,
        cwd=str(work),
    )
    elapsed = time.perf_counter() - started
    summary, states, error = "", 0, None
    for line in result.stdout.splitlines():
        if not line.startswith("{"):
            continue
        message = json.loads(line)
        if message["type"] == "STATE":
            states += 1
        elif message["type"] == "LOG" and message["log"]["message"].startswith("summary:"):
            summary = message["log"]["message"]
        elif message["type"] == "TRACE" and message["trace"].get("type") == "ERROR":
            error = message["trace"]["error"]["message"]
    if result.returncode != 0 or error:
        raise SystemExit(f"destination-mistral write ({name}) failed: {error or result.stderr[-1000:]}")
    return {"seconds": elapsed, "summary": summary, "states": states}


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def run_demo(
    base_url: str, api_key: str, work_dir: str | os.PathLike, sample: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Enriches the sample reviews against the API at `base_url` and prints what came out.
    Returns the figures it printed (for tests)."""
    import duckdb

    work = Path(work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    database = work / "enriched.duckdb"
    for stale in (database, Path(str(database) + ".wal")):
        if stale.exists():
            stale.unlink()
    records = _records(Path(sample) if sample else SAMPLE)
    credentials = {"api_key": api_key, "base_url": base_url, "model": "mistral-small-latest"}
    output = {"type": "duckdb", "path": str(database)}
    chat_config = {
        **credentials,
        "enrichment": {
            "mode": "chat",
            "system_prompt": "You read product reviews and extract structured facts. Answer in JSON.",
            "prompt_template": "Product: {{ product }} (rated {{ rating }}/5)\nReview: {{ review }}\n\n"
            "Give the sentiment, the topics the review talks about, and a one-line summary.",
            "temperature": 0,
            "random_seed": 7,
            "response_format": {
                "type": "json_schema",
                "name": "review_facts",
                "schema": json.dumps(EXTRACTION_SCHEMA),
                "strict": True,
            },
        },
        "output": output,
    }
    embed_config = {
        **credentials,
        "enrichment": {"mode": "embeddings", "fields": ["product", "review"]},
        "output": output,
    }

    print(f"== destination-mistral: enriching {len(records)} product reviews into {database}")
    chat = _write(work, "chat", chat_config, "insights", records)
    print(
        f"chat (json_schema extraction) -> insights.product_reviews: {chat['seconds']:.1f} s, "
        f"{chat['states']} state(s) emitted"
    )
    print(f"  {chat['summary']}")
    vectors = _write(work, "embeddings", embed_config, "vectors", records)
    print(f"embeddings (mistral-embed, fields product + review) -> vectors.product_reviews: {vectors['seconds']:.1f} s")
    print(f"  {vectors['summary']}")
    again = _write(work, "embeddings", embed_config, "vectors", records)
    print("the same embeddings write again (everything from the cache):")
    print(f"  {again['summary']}")

    con = duckdb.connect(str(database), read_only=True)
    try:
        rows = con.execute(
            "SELECT id, product, rating, _mistral_answer->>'sentiment' AS sentiment, "
            "CAST(_mistral_answer->'topics' AS VARCHAR) AS topics, _mistral_answer->>'summary' AS summary, "
            "_mistral_error FROM insights.product_reviews ORDER BY id LIMIT 5"
        ).fetchall()
        print("\nenriched rows (insights.product_reviews, first 5):")
        print(f"  {'id':>3}  {'product':<18} {'rating':>6}  {'sentiment':<9}  {'topics':<28} summary")
        for row_id, product, rating, sentiment, topics, summary, error in rows:
            shown = f"error: {error}" if error else _short(summary or "", 60)
            print(
                f"  {row_id:>3}  {_short(product, 18):<18} {rating:>6}  {sentiment or '-':<9}  "
                f"{_short(topics or '-', 28):<28} {shown}"
            )
        counts = con.execute(
            "SELECT _mistral_answer->>'sentiment' AS sentiment, count(*) FROM insights.product_reviews "
            "GROUP BY 1 ORDER BY 2 DESC"
        ).fetchall()
        print("  sentiment counts: " + ", ".join(f"{s}={n}" for s, n in counts))

    finally:
        con.close()
    search = [
        str(BIN / "destination-mistral"),
        "search",
        "--config",
        str(work / "destination_embeddings_config.json"),
        "--stream",
        "product_reviews",
        "--namespace",
        "vectors",
        "--k",
        "3",
        "--width",
        "110",
        QUERY,
    ]
    print(
        f"\n$ destination-mistral search --config destination_embeddings_config.json --stream product_reviews "
        f"--namespace vectors --k 3 {QUERY!r}"
    )
    found = subprocess.run(search, capture_output=True, text=True, check=False, cwd=str(work))
    if found.returncode != 0:
        raise SystemExit(f"destination-mistral search failed: {found.stderr[-1000:]}")
    print("\n".join("  " + line for line in found.stdout.splitlines()))
    hits = json.loads(subprocess.run([*search, "--json"], capture_output=True, text=True, check=True).stdout)
    return {"chat": chat, "embeddings": vectors, "again": again, "rows": rows, "hits": hits}


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", help="the API root; without it, a local emulator is started")
    parser.add_argument("--api-key", default=os.environ.get("MISTRAL_API_KEY"), help="default: $MISTRAL_API_KEY")
    parser.add_argument("--work-dir", type=Path, default=WORK)
    args = parser.parse_args(list(argv) if argv is not None else None)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    if args.base_url:
        if not args.api_key:
            parser.error("--base-url needs --api-key or $MISTRAL_API_KEY")
        sync_source(args.base_url, args.api_key, args.work_dir)
        print()
        run_demo(args.base_url, args.api_key, args.work_dir)
        return
    from mistral_emulator import EmulatorProcess, EmulatorSettings

    settings = EmulatorSettings(files=230, batch_jobs=120, agents=25, fine_tuning_jobs=12)
    with EmulatorProcess(api_key=EMULATOR_KEY, settings=settings) as emulator:
        sync_source(emulator.base_url, EMULATOR_KEY, args.work_dir)
        print()
        run_demo(emulator.base_url, EMULATOR_KEY, args.work_dir)


if __name__ == "__main__":
    main()
