"""The embedding chunker: every chunk within the bound by the model's own tokenizer, chunks in order
and covering the text, overlap near what was asked, structure before tokens."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from destination_mistral.enrich.chunking import Chunk, Chunker
from destination_mistral.enrich.tokens import chunk_counter, tokenizer_for

MODELS = ["mistral-embed", "codestral-embed"]


@pytest.fixture(scope="module", params=MODELS)
def tokenizer(request):
    return tokenizer_for(request.param)


def _paragraphs(count: int) -> str:
    return "\n\n".join(
        " ".join(f"Sentence {p}.{s} tells about record {p * 10 + s} and its fields." for s in range(6))
        for p in range(count)
    )


def _check(text: str, chunks: list[Chunk], count, max_tokens: int) -> None:
    """Bound, order, coverage and consistency of the fields."""
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.text, "no empty chunk"
        assert chunk.text == text[chunk.start : chunk.end]
        assert chunk.text == chunk.text.strip()
        assert chunk.tokens == count(chunk.text) <= max_tokens
    starts = [c.start for c in chunks]
    assert starts == sorted(set(starts)), "chunks in order, none twice"
    assert all(b.end > a.end for a, b in zip(chunks, chunks[1:], strict=False)), "each adds text"
    covered = bytearray(len(text))
    for chunk in chunks:
        covered[chunk.start : chunk.end] = b"\x01" * (chunk.end - chunk.start)
    uncovered = [i for i, ch in enumerate(text) if not covered[i] and not ch.isspace()]
    assert not uncovered, f"characters in no chunk at {uncovered[:5]}"


# --- arguments -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": -3}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_tokens": 64, "overlap_tokens": 64}, "overlap_tokens"),
        ({"max_tokens": 64, "overlap_tokens": 100}, "overlap_tokens"),
        ({"max_tokens": 64, "overlap_tokens": -1}, "overlap_tokens"),
        ({"max_tokens": 64, "split_on": "html"}, "split_on"),
    ],
)
def test_invalid_arguments_name_their_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        Chunker(len, **kwargs)


def test_counter_must_count():
    with pytest.raises(ValueError, match="^count_tokens"):
        Chunker(42, max_tokens=10)  # type: ignore[arg-type]


def test_tokenizer_object_and_function_and_model_name_agree(tokenizer):
    text = _paragraphs(12)
    by_object = Chunker(tokenizer, 64, 8).split(text)
    assert by_object == Chunker(tokenizer.count, 64, 8).split(text)
    model = next(m for m in MODELS if tokenizer_for(m) is tokenizer)
    assert by_object == Chunker.for_model(model, 64, 8).split(text)


# --- behaviour -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", " ", "\n\n\t  \n"])
def test_empty_or_blank_text_has_no_chunks(text):
    assert Chunker(len, 10).split(text) == []


def test_short_text_is_one_chunk_stripped(tokenizer):
    chunks = Chunker(tokenizer, 512, 64).split("  \n A short review.\n\n")
    assert chunks == [Chunk(0, "A short review.", tokenizer.count("A short review."), 4, 19)]


def test_bound_order_coverage_and_overlap(tokenizer):
    text = _paragraphs(60)
    chunks = Chunker(tokenizer, 300, 32).split(text)
    assert len(chunks) > 10
    _check(text, chunks, tokenizer.count, 300)
    overlaps = [tokenizer.count(text[b.start : a.end]) for a, b in zip(chunks, chunks[1:], strict=False)]
    assert all(0 < o <= 32 for o in overlaps), overlaps
    assert sum(overlaps) / len(overlaps) >= 16  # about what was asked, not a token or two
    # Filled: the merge does not stop far short of the bound.
    assert sum(c.tokens for c in chunks[:-1]) / (len(chunks) - 1) >= 0.6 * 300


def test_overlap_yields_to_a_paragraph_that_fits_only_without_it(tokenizer):
    text = _paragraphs(4)
    paragraph_tokens = max(tokenizer.count(p) for p in text.split("\n\n"))
    chunks = Chunker(tokenizer, paragraph_tokens + 1, paragraph_tokens // 2).split(text)
    # Whole paragraphs rather than a repeated tail and a paragraph cut in two.
    assert [c.text for c in chunks] == text.split("\n\n")


def test_no_overlap_means_chunks_do_not_share_text(tokenizer):
    text = _paragraphs(20)
    chunks = Chunker(tokenizer, 100).split(text)
    _check(text, chunks, tokenizer.count, 100)
    assert all(b.start >= a.end for a, b in zip(chunks, chunks[1:], strict=False))


def test_paragraphs_before_sentences_before_words(tokenizer):
    text = _paragraphs(6)
    paragraph_tokens = max(tokenizer.count(p) for p in text.split("\n\n"))
    # Room for one paragraph and not two: every chunk is exactly one paragraph.
    chunks = Chunker(tokenizer, paragraph_tokens + 2).split(text)
    assert [c.text for c in chunks] == text.split("\n\n")
    # Room for less than a paragraph: chunks end at sentence ends.
    chunks = Chunker(tokenizer, paragraph_tokens // 2).split(text)
    assert len(chunks) > 6
    assert all(c.text.endswith(".") for c in chunks)


def test_markdown_splits_at_headings(tokenizer):
    sections = [f"{'#' * (1 + s % 3)} Section {s}\n\n{_paragraphs(1)}" for s in range(8)]
    text = "\n\n".join(sections)
    section_tokens = max(tokenizer.count(s) for s in sections)
    chunks = Chunker(tokenizer, section_tokens + 4, split_on="markdown").split(text)
    assert all(c.text.startswith("#") for c in chunks)
    assert [c.text for c in chunks] == sections
    _check(text, chunks, tokenizer.count, section_tokens + 4)


def test_markdown_ignores_hashes_in_code_fences(tokenizer):
    code = "```python\n" + "\n".join(f"# comment {i}\nx_{i} = {i}" for i in range(30)) + "\n```"
    sections = [f"# Title\n\nIntro text.\n\n{code}", "# Next\n\nMore text."]
    text = "\n\n".join(sections)
    # Room for the first section and not for both: the cut is at "# Next", not at a comment.
    chunks = Chunker(tokenizer, tokenizer.count(sections[0]) + 2, split_on="markdown").split(text)
    assert [c.text.splitlines()[0] for c in chunks] == ["# Title", "# Next"]


def test_markdown_is_a_text_splitter_for_plain_text(tokenizer):
    text = _paragraphs(15)
    markdown = Chunker(tokenizer, 100, 10, "markdown").split(text)
    assert markdown == Chunker(tokenizer, 100, 10, "text").split(text)


def test_giant_word_is_cut_by_tokens(tokenizer):
    word = "".join(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[(i * 7919) % 64] for i in range(6000)
    )
    chunks = Chunker(tokenizer, 200, 20).split(f"Before.\n\n{word}\n\nAfter.")
    _check(f"Before.\n\n{word}\n\nAfter.", chunks, tokenizer.count, 200)
    # Cut at the longest prefix that fits: every full cut of the word is near the bound.
    inside = [c for c in chunks[1:-2] if c.text in word]
    assert inside and all(c.tokens >= 180 for c in inside)


def test_a_giant_word_is_never_counted_whole_nor_for_an_overlap_it_has_no_room_for(tokenizer):
    """A run without spaces costs a pass of the tokenizer per count: it is measured by its head, cut
    by tokens into pieces that fill their chunks, and no overlap is sought before a piece that
    leaves no room for one."""
    word = "".join(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[(i * 7919) % 64] for i in range(20000)
    )
    text = f"Before.\n\n{word}\n\nAfter."
    counted: list[int] = []

    def count(piece: str) -> int:
        counted.append(len(piece))
        return tokenizer.count(piece)

    chunks = Chunker(count, 200, 40).split(text)
    _check(text, chunks, tokenizer.count, 200)
    assert max(counted) < len(word) // 4, "the run was counted whole"
    inside = [c for c in chunks if c.text in word]
    assert len(counted) <= 3 * len(inside), f"{len(counted)} counts for {len(inside)} chunks of the run"


def test_a_long_run_of_words_without_sentences_fills_its_chunks(tokenizer):
    """A flattened table: thousands of words with no sentence or line break, cut into groups of
    words that the merge packs nearly to the bound."""
    words = ["invoice", "12.50", "EUR", "shipped", "naïve", "東京", "row", "42", "status:", "ok"]
    text = " ".join(words[(i * 7) % len(words)] + str(i % 13) for i in range(4000))
    chunks = Chunker(tokenizer, 256, 32).split(text)
    _check(text, chunks, tokenizer.count, 256)
    assert all(chunk.tokens >= 256 * 0.85 for chunk in chunks[:-1]), [c.tokens for c in chunks]


def test_text_without_breaks_or_spaces(tokenizer):
    text = "東京都の天気は晴れです数据处理管道向量检索模型分词器" * 80
    chunks = Chunker(tokenizer, 64, 8).split(text)
    _check(text, chunks, tokenizer.count, 64)
    assert len(chunks) > 3


def test_unicode(tokenizer):
    text = "\n\n".join(
        f"Résumé naïve façade {i}: данные поток 😀🚀 żółw ðæt Ångström œuvre. 数据处理。東京都の天気は晴れです。" * 3
        for i in range(20)
    )
    chunks = Chunker(tokenizer, 50, 10).split(text)
    _check(text, chunks, tokenizer.count, 50)


def test_a_character_over_the_bound_is_refused():
    # A counter by UTF-8 bytes: the emoji is 4 and cannot fit in 3.
    with pytest.raises(ValueError, match="^max_tokens"):
        Chunker(lambda t: len(t.encode()), 3).split("ab 😀 cd")


def test_deterministic(tokenizer):
    text = _paragraphs(30)
    first = Chunker(tokenizer, 90, 12, "markdown").split(text)
    assert all(Chunker(tokenizer, 90, 12, "markdown").split(text) == first for _ in range(3))


def test_windows_line_ends_and_blank_paragraphs(tokenizer):
    text = "\r\n\r\n".join(f"Line {i} of a file written on Windows." for i in range(60)) + "\r\n \r\n\r\n"
    chunks = Chunker(tokenizer, 40, 5).split(text)
    _check(text, chunks, tokenizer.count, 40)


# --- properties ----------------------------------------------------------------------------------------------

_ALPHABET = st.sampled_from(
    list("abc xyz ABC.,;!?\n\n\t#-é€東😀▁") + ["# ", "\n## ", "```\n", ". ", "\r\n", "  ", "\xa0", "\u3000"]
)
_TEXTS = st.lists(_ALPHABET, max_size=400).map("".join) | st.text(max_size=300)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=_TEXTS,
    max_tokens=st.integers(8, 60),
    overlap_share=st.floats(0, 0.9),
    split_on=st.sampled_from(["text", "markdown"]),
)
def test_property_bound_and_coverage(tokenizer, text, max_tokens, overlap_share, split_on):
    overlap = int(max_tokens * overlap_share)
    chunks = Chunker(tokenizer, max_tokens, overlap, split_on).split(text)
    _check(text, chunks, tokenizer.count, max_tokens)
    if not text.strip():
        assert chunks == []
    # The destination's counter (remembered words and span sums for mistral-embed) decides alike.
    model = next(m for m in MODELS if tokenizer_for(m) is tokenizer)
    assert Chunker(chunk_counter(model), max_tokens, overlap, split_on).split(text) == chunks


_RUNS = st.sampled_from(["QmFzZTY0IHJ1bg" * 40, "東京都の天気は晴れです" * 30, "word " * 150, "x" * 700])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(_TEXTS | _RUNS, min_size=1, max_size=6), max_tokens=st.integers(16, 200))
def test_property_long_runs_are_cut_within_the_bound(tokenizer, parts, max_tokens):
    """Runs without boundaries (base64, CJK, a flat run of words) among ordinary text: cut by tokens
    within the bound, covering everything, with the destination's counter deciding as the tokenizer."""
    text = "\n\n".join(parts)
    chunks = Chunker(tokenizer, max_tokens, max_tokens // 8).split(text)
    _check(text, chunks, tokenizer.count, max_tokens)
    model = next(m for m in MODELS if tokenizer_for(m) is tokenizer)
    assert Chunker(chunk_counter(model), max_tokens, max_tokens // 8).split(text) == chunks


@settings(max_examples=60, deadline=None)
@given(
    words=st.lists(
        st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12), max_size=120
    ),
    max_tokens=st.integers(1, 30),
)
@example(words=["000\r", "0"], max_tokens=4)  # a group of words cut inside a run of whitespace kept its "\r"
def test_property_bound_with_a_byte_counter(words, max_tokens):
    """With a counter by UTF-8 bytes any bound of 4 or more holds for any text (a character is at most
    4 bytes); below that a wider character is refused rather than returned over the bound."""
    text = " ".join(words)

    def count(t: str) -> int:
        return len(t.encode())

    try:
        chunks = Chunker(count, max_tokens, max_tokens // 3).split(text)
    except ValueError as error:
        assert max_tokens < 4 and "max_tokens" in str(error)
        return
    _check(text, chunks, count, max_tokens)
    assert not re.search(r"\S", text) or chunks


@pytest.mark.parametrize("max_tokens", [512, 4096])
def test_lines_of_one_word_are_merged_in_a_few_counts_not_one_a_line(tokenizer, max_tokens):
    """Each line alone counts the space mark it lacks after a line break, so the pieces' sums far
    undercount a merged chunk: the merge must drop lines in proportion, not one per recount."""
    text = "word\n" * 8000
    passes = []

    class Counted:  # the tokenizer, with each pass over a text noted
        def count(self, piece: str) -> int:
            passes.append(len(piece))
            return tokenizer.count(piece)

        def count_many(self, pieces: list[str]) -> list[int]:
            return tokenizer.count_many(pieces)

    chunks = Chunker(Counted(), max_tokens).split(text)
    _check(text, chunks, tokenizer.count, max_tokens)
    assert sum(passes) < 20 * len(text), f"{len(passes)} passes over {sum(passes):,} characters"
