"""Text splitters measured against each other with Mistral's own tokenizers, to choose the chunker of
destination_mistral/enrich/chunking.py.

The documents are built deterministically (a seeded generator): paragraphs of sentences, markdown
headings, some very long paragraphs without a sentence or line break, one giant "word" without spaces,
and non-ASCII text (accents, Cyrillic, CJK without spaces, emoji). Each splitter splits every document
into chunks of at most --max-tokens with --overlap-tokens of overlap, counting with the embedding
model's tokenizer, and is measured on:

- CPU seconds (time.process_time, not wall time: the machine is shared),
- chunks over the bound, recounted with the model's tokenizer on each chunk as it would be embedded,
- coverage: the documents with a non-blank character that no chunk holds (chunks found in order),
- mean chunk tokens and mean overlap tokens between neighbouring chunks,
- what installing it adds to the connector's own dependencies.

The table is printed; the figures go to bench-results/splitters.json.

    .venv/bin/python tools/bench_splitters.py [--docs 500] [--doc-tokens 4000] [--models mistral-embed,codestral-embed]

langchain-text-splitters is not a dependency of the connector; install it to measure it
(`pip install langchain-text-splitters`); a missing library's rows are skipped with a note."""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import random
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from destination_mistral.enrich.tokens import tokenizer_for  # noqa: E402
from destination_mistral.enrich.word_counts import WordCounts  # noqa: E402

RESULTS = REPO / "bench-results" / "splitters.json"

WORDS = (
    "the of and a to in is that for it as with was on be by this are from at or an which have has not "
    "model token embedding vector search index record stream field batch request latency throughput "
    "document paragraph sentence chunk overlap boundary tokenizer vocabulary pipeline destination source "
    "customer invoice shipment warehouse ledger account balance quarterly revenue forecast margin"
).split()
# Non-ASCII: accents and ligatures, Cyrillic, and words the byte-fallback tokenizers spend many tokens on.
FOREIGN = "résumé naïve façade über straße déjà-vu Ångström œuvre данные поток вектор ĉiuj żółw ðæt 😀 🚀 ✓".split()
CJK = "東京都の天気は晴れです数据处理管道向量检索模型分词器句子段落文档"


def _sentence(rng: random.Random, foreign: float) -> str:
    words = [rng.choice(FOREIGN) if rng.random() < foreign else rng.choice(WORDS) for _ in range(rng.randint(6, 24))]
    words[0] = words[0].capitalize()
    if rng.random() < 0.2:
        words.insert(rng.randint(1, len(words) - 1), f"{rng.randint(1, 99999)},")
    return " ".join(words) + rng.choice(".....?!;")


def _paragraph(rng: random.Random, foreign: float) -> str:
    return " ".join(_sentence(rng, foreign) for _ in range(rng.randint(1, 9)))


def _long_run(rng: random.Random) -> str:
    """A paragraph that a sentence or line splitter cannot break: one of three shapes."""
    kind = rng.randrange(3)
    if kind == 0:  # words, no punctuation, no newline (e.g. a scraped table flattened to one line)
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(900, 1800)))
    if kind == 1:  # one giant word: base64-like, no space at all
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(3000, 6000)))
    return "".join(rng.choice(CJK) for _ in range(rng.randint(800, 1600)))  # CJK: no spaces


def make_documents(count: int, doc_tokens: int, count_tokens: Callable[[str], int], seed: int = 7) -> list[str]:
    """Documents of about `doc_tokens` tokens each. One in three is markdown with headings, one in
    five holds a long unbreakable run, one in four leans on non-ASCII words."""
    rng = random.Random(seed)
    docs = []
    for i in range(count):
        markdown = i % 3 == 0
        foreign = 0.3 if i % 4 == 1 else 0.02
        parts: list[str] = []
        total = 0
        if markdown:
            parts.append(f"# {_sentence(rng, foreign).rstrip('.?!;')}")
        while total < doc_tokens:
            if markdown and rng.random() < 0.25:
                part = f"{'#' * rng.randint(2, 4)} {_sentence(rng, foreign).rstrip('.?!;')}"
            elif i % 5 == 2 and rng.random() < 0.15:
                part = _long_run(rng)
            elif rng.random() < 0.1:  # lines without a blank line between them (a list)
                part = "\n".join(f"- {_sentence(rng, foreign)}" for _ in range(rng.randint(2, 6)))
            else:
                part = _paragraph(rng, foreign)
            parts.append(part)
            total += count_tokens(part) + 1
        docs.append("\n\n".join(parts))
    return docs


# --- contenders --------------------------------------------------------------------------------------------


def _semantic(markdown: bool, count: Callable[[str], int], max_tokens: int, overlap: int):
    from semantic_text_splitter import MarkdownSplitter, TextSplitter

    cls = MarkdownSplitter if markdown else TextSplitter
    splitter = cls.from_callback(count, max_tokens, overlap=overlap)
    return lambda text: [(start, chunk) for start, chunk in splitter.chunk_indices(text)]


def _langchain(markdown: bool, count: Callable[[str], int], max_tokens: int, overlap: int):
    from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter

    # Paragraphs, lines, sentences, words, then characters: the nearest to semantic-text-splitter's levels.
    recursive = RecursiveCharacterTextSplitter(
        chunk_size=max_tokens,
        chunk_overlap=overlap,
        length_function=count,
        separators=["\n\n", "\n", ". ", " ", ""],
        add_start_index=True,
    )
    if not markdown:
        return lambda text: [(d.metadata["start_index"], d.page_content) for d in recursive.create_documents([text])]
    headers = MarkdownHeaderTextSplitter(
        [("#", "h1"), ("##", "h2"), ("###", "h3"), ("####", "h4")], strip_headers=False
    )

    def split(text: str) -> list[tuple[int, str]]:
        # The header splitter rejoins a section's lines (with "  \n"), so offsets are not kept: the
        # chunks are found in the text afterwards, and what no longer matches shows as uncovered.
        return [(-1, d.page_content) for d in recursive.split_documents(headers.split_text(text))]

    return split


def _own(markdown: bool, count, max_tokens: int, overlap: int):
    from destination_mistral.enrich.chunking import Chunker

    chunker = Chunker(count, max_tokens, overlap, "markdown" if markdown else "text")
    return lambda text: [(chunk.start, chunk.text) for chunk in chunker.split(text)]


CONTENDERS = {
    "destination_mistral Chunker text": ("airbyte-mistral", lambda *a: _own(False, *a)),
    "destination_mistral Chunker markdown": ("airbyte-mistral", lambda *a: _own(True, *a)),
    "semantic-text-splitter TextSplitter": ("semantic-text-splitter", lambda *a: _semantic(False, *a)),
    "semantic-text-splitter MarkdownSplitter": ("semantic-text-splitter", lambda *a: _semantic(True, *a)),
    "langchain RecursiveCharacterTextSplitter": ("langchain-text-splitters", lambda *a: _langchain(False, *a)),
    "langchain MarkdownHeader+Recursive": ("langchain-text-splitters", lambda *a: _langchain(True, *a)),
}


# --- measures ------------------------------------------------------------------------------------------------


def _spans(text: str, chunks: list[tuple[int, str]]) -> list[tuple[int, int]] | None:
    """Each chunk's span in the text, found in order; None when a chunk is not in the text."""
    spans: list[tuple[int, int]] = []
    for start, chunk in chunks:
        if start < 0 or text[start : start + len(chunk)] != chunk:
            # Overlap means the next chunk may start before the previous one's end; search from the
            # previous chunk's start.
            start = text.find(chunk, spans[-1][0] if spans else 0)
            if start < 0:
                return None
        spans.append((start, start + len(chunk)))
    return spans


def _uncovered(text: str, spans: list[tuple[int, int]] | None) -> int:
    if spans is None:
        return len(re.sub(r"\s", "", text))
    covered = bytearray(len(text))
    for start, end in spans:
        covered[start:end] = b"\x01" * (end - start)
    return sum(1 for i, ch in enumerate(text) if not covered[i] and not ch.isspace())


def measure(name: str, split: Callable, docs: list[str], count: Callable[[str], int], max_tokens: int) -> dict:
    results = []
    cpu0 = time.process_time()
    for doc in docs:
        results.append(split(doc))
    cpu = time.process_time() - cpu0
    chunk_tokens, overlaps, over, uncovered_docs, out_of_order = [], [], 0, 0, 0
    for doc, chunks in zip(docs, results, strict=True):
        tokens = [count(chunk) for _, chunk in chunks]
        chunk_tokens += tokens
        over += sum(t > max_tokens for t in tokens)
        spans = _spans(doc, chunks)
        if _uncovered(doc, spans):
            uncovered_docs += 1
        if spans:
            out_of_order += sum(b[0] < a[0] for a, b in zip(spans, spans[1:], strict=False))
            overlaps += [count(doc[b[0] : a[1]]) for a, b in zip(spans, spans[1:], strict=False) if b[0] < a[1]]
    return {
        "library": name,
        "docs": len(docs),
        "chunks": len(chunk_tokens),
        "cpu_s": round(cpu, 3),
        "cpu_ms_per_doc": round(1000 * cpu / len(docs), 2),
        "over_bound": over,
        "max_chunk_tokens": max(chunk_tokens, default=0),
        "mean_chunk_tokens": round(sum(chunk_tokens) / max(1, len(chunk_tokens)), 1),
        "mean_overlap_tokens": round(sum(overlaps) / max(1, len(overlaps)), 1),
        "pairs_with_overlap": len(overlaps),
        "docs_not_covered": uncovered_docs,
        "chunks_out_of_order": out_of_order,
    }


def _dist_size(dist: md.Distribution) -> int:
    total = 0
    for file in dist.files or []:
        try:
            total += file.locate().stat().st_size
        except OSError:
            pass
    return total


def _closure(name: str) -> set[str]:
    """The distribution and everything it requires (without extras), as installed."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = re.split(r"[\s\[<>=!~;(]", todo.pop(), maxsplit=1)[0].lower().replace("_", "-")
        if current in seen:
            continue
        try:
            dist = md.distribution(current)
        except md.PackageNotFoundError:
            continue
        seen.add(current)
        todo += [req for req in dist.requires or [] if "extra ==" not in req]
    return seen


def install_footprint(package: str) -> dict:
    """What the package adds to the connector's installed dependencies: the distributions and MB."""
    try:
        md.distribution(package)
    except md.PackageNotFoundError:
        return {"installed": False}
    added = sorted(_closure(package) - _closure("airbyte-mistral"))
    size = sum(_dist_size(md.distribution(name)) for name in added)
    own = _dist_size(md.distribution(package))
    return {
        "installed": True,
        "version": md.version(package),
        "own_mb": round(own / 1e6, 1),
        "added_distributions": added,
        "added_mb": round(size / 1e6, 1),
    }


def add_document_arguments(parser: argparse.ArgumentParser) -> None:
    """The documents and chunk settings the chunking benchmarks share (this one and bench_chunking)."""
    parser.add_argument("--docs", type=int, default=500)
    parser.add_argument("--doc-tokens", type=int, default=4000)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--overlap-tokens", type=int, default=64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_document_arguments(parser)
    parser.add_argument("--models", default="mistral-embed,codestral-embed")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    rows, notes = [], []
    for model in args.models.split(","):
        tokenizer = tokenizer_for(model)
        count = tokenizer.count
        docs = make_documents(args.docs, args.doc_tokens, count)
        doc_tokens = tokenizer.count_many(docs)
        cpu0 = time.process_time()
        tokenizer.count_many(docs)
        # What any sync of these documents spends anyway: one count of every document's tokens.
        one_pass = time.process_time() - cpu0
        print(
            f"{model}: {len(docs)} docs, mean {sum(doc_tokens) / len(docs):.0f} tokens, "
            f"one tokenizer pass over all of them: {one_pass:.2f} CPU s",
            flush=True,
        )
        for name, (package, build) in CONTENDERS.items():
            # This project's chunker counts as the destination does (tokens.chunk_counter: remembered
            # words and span counts where the tokenizer cuts at spaces), from a cold memory each time;
            # the libraries get the tokenizer's count. Every contender's chunks are checked with the
            # exact count.
            counter = count
            if package == "airbyte-mistral":
                counter = WordCounts(tokenizer) if tokenizer.splits_at_spaces else tokenizer
            try:
                split = build(counter, args.max_tokens, args.overlap_tokens)
            except ImportError as error:
                notes.append(f"{name}: skipped ({error}); pip install {package}")
                continue
            row = {"model": model, **measure(name, split, docs, count, args.max_tokens)}
            row["cpu_vs_one_tokenizer_pass"] = round(row["cpu_s"] / one_pass, 1) if one_pass else None
            rows.append(row)
            print(f"  {name}: {row['cpu_s']} CPU s", flush=True)

    columns = [
        ("model", "model"),
        ("library", "library"),
        ("docs", "docs"),
        ("chunks", "chunks"),
        ("cpu_s", "CPU s"),
        ("cpu_ms_per_doc", "CPU ms/doc"),
        ("over_bound", "chunks over the bound"),
        ("max_chunk_tokens", "max chunk tokens"),
        ("mean_chunk_tokens", "mean chunk tokens"),
        ("mean_overlap_tokens", "mean overlap tokens"),
        ("docs_not_covered", "docs not covered"),
    ]
    print()
    print("| " + " | ".join(title for _, title in columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[key]) for key, _ in columns) + " |")
    libraries = {package for package, _ in CONTENDERS.values() if package != "airbyte-mistral"}
    footprints = {package: install_footprint(package) for package in sorted(libraries)}
    print()
    for package, footprint in footprints.items():
        if footprint.get("installed"):
            print(
                f"{package} {footprint['version']}: {footprint['own_mb']} MB itself; adds "
                f"{len(footprint['added_distributions'])} distributions, {footprint['added_mb']} MB, to the "
                f"connector's: {', '.join(footprint['added_distributions'])}"
            )
    for note in notes:
        print(note)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: getattr(args, k) for k in ("docs", "doc_tokens", "max_tokens", "overlap_tokens", "models")}
    payload = {"python": sys.version.split()[0], "settings": settings, "rows": rows, "install": footprints}
    args.output.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten to {args.output.relative_to(REPO) if args.output.is_relative_to(REPO) else args.output}")


if __name__ == "__main__":
    main()
