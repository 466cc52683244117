"""The README's demo of destination-mistral: enrich the bundled product reviews twice (a json_schema
chat extraction and embeddings) by running `destination-mistral write` as a real subprocess, then
query the DuckDB file, including a semantic search with `array_cosine_similarity`.

    python -m destination_mistral.demo --base-url http://127.0.0.1:8089 --api-key emulator-key --work-dir out/demo
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterable

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE = REPO_ROOT / "sample_data" / "product_reviews.jsonl"
CATALOG = REPO_ROOT / "sample_data" / "product_reviews_catalog.json"
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


def _command() -> list[str]:
    return [sys.executable, "-m", "destination_mistral"]


def _environment() -> dict[str, str]:
    # The package may be used from a checkout that is not installed: the subprocess must find it too.
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return env


def _input_messages(records: list[dict], namespace: str) -> str:
    now = int(time.time() * 1000)
    lines = [
        json.dumps({"type": "RECORD", "record": {"stream": "product_reviews", "namespace": namespace, "data": r, "emitted_at": now}})
        for r in records
    ]
    lines.append(json.dumps({"type": "STATE", "state": {"type": "STREAM", "stream": {
        "stream_descriptor": {"name": "product_reviews", "namespace": namespace}, "stream_state": {"last_id": records[-1]["id"]}}}}))
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
        [*_command(), "write", "--config", str(config_path), "--catalog", str(catalog_path)],
        input=_input_messages(records, namespace), capture_output=True, text=True, check=False, cwd=str(work), env=_environment(),
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


def _embed(base_url: str, api_key: str, text: str) -> list[float]:
    request = urllib.request.Request(
        base_url.rstrip("/") + "/v1/embeddings",
        data=json.dumps({"model": "mistral-embed", "input": [text]}).encode(),
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"][0]["embedding"]


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def run_demo(base_url: str, api_key: str, work_dir: str | os.PathLike, sample: str | os.PathLike | None = None) -> dict[str, Any]:
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
            "response_format": {"type": "json_schema", "name": "review_facts", "schema": json.dumps(EXTRACTION_SCHEMA), "strict": True},
        },
        "output": output,
    }
    embed_config = {**credentials, "enrichment": {"mode": "embeddings", "fields": ["product", "review"]}, "output": output}

    print(f"== destination-mistral: enriching {len(records)} product reviews into {database}")
    chat = _write(work, "chat", chat_config, "insights", records)
    print(f"chat (json_schema extraction) -> insights.product_reviews: {chat['seconds']:.1f} s, {chat['states']} state(s) emitted")
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
            "CAST(_mistral_answer->'topics' AS VARCHAR) AS topics, _mistral_answer->>'summary' AS summary, _mistral_error "
            "FROM insights.product_reviews ORDER BY id LIMIT 5"
        ).fetchall()
        print("\nenriched rows (insights.product_reviews, first 5):")
        print(f"  {'id':>3}  {'product':<18} {'rating':>6}  {'sentiment':<9}  {'topics':<28} summary")
        for row_id, product, rating, sentiment, topics, summary, error in rows:
            shown = f"error: {error}" if error else _short(summary or "", 60)
            print(f"  {row_id:>3}  {_short(product, 18):<18} {rating:>6}  {sentiment or '-':<9}  {_short(topics or '-', 28):<28} {shown}")
        counts = con.execute(
            "SELECT _mistral_answer->>'sentiment' AS sentiment, count(*) FROM insights.product_reviews GROUP BY 1 ORDER BY 2 DESC"
        ).fetchall()
        print("  sentiment counts: " + ", ".join(f"{s}={n}" for s, n in counts))

        dimension = con.execute("SELECT array_length(_mistral_embedding) FROM vectors.product_reviews LIMIT 1").fetchone()[0]
        query_vector = _embed(base_url, api_key, QUERY)
        hits = con.execute(
            f"SELECT id, product, review, array_cosine_similarity(_mistral_embedding, ?::FLOAT[{dimension}]) AS score "
            "FROM vectors.product_reviews WHERE _mistral_embedding IS NOT NULL ORDER BY score DESC LIMIT 3",
            [query_vector],
        ).fetchall()
    finally:
        con.close()
    print(f"\nsemantic search for {QUERY!r} (array_cosine_similarity over FLOAT[{dimension}] in DuckDB):")
    for rank, (row_id, product, review, score) in enumerate(hits, 1):
        print(f"  {rank}. {score:.3f}  #{row_id} {product}: {_short(review, 80)}")
    return {"chat": chat, "embeddings": vectors, "again": again, "rows": rows, "hits": hits}


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", help="the API root; without it, a local emulator is started")
    parser.add_argument("--api-key", default=os.environ.get("MISTRAL_API_KEY", "emulator-key"))
    parser.add_argument("--work-dir", default="out/demo")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.base_url:
        run_demo(args.base_url, args.api_key, args.work_dir)
        return
    from mistral_emulator.server import EmulatorProcess

    with EmulatorProcess(api_key=args.api_key) as emulator:
        run_demo(emulator.base_url, args.api_key, args.work_dir)


if __name__ == "__main__":
    main()
