"""WordCounts counts a text as the sum of its words' counts, each tokenized once: it must give the
tokenizer's own count for every text, or chunks would break their bound or carry a wrong count."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from destination_mistral.enrich.tokens import chunk_counter, tokenizer_for
from destination_mistral.enrich.word_counts import WordCounts

TOKENIZER = tokenizer_for("mistral-embed")
# Words, punctuation, digits, accents, CJK, emoji, tabs and new lines, and runs of spaces: what
# documents hold, and the whitespace the word rule must leave to the tokenizer.
ALPHABET = st.sampled_from(
    list("abcXYZ019.,;:!?'\"()-_/ \t\n")
    + ["é", "ß", "ж", "東", "京", "😀", "  ", "\n\n", "▁", "<0x0A>", "\xa0", "\u3000", "\u200b", "\r"]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(ALPHABET, max_size=80).map("".join))
def test_word_counts_equal_the_tokenizers_count_for_any_text(text):
    assert WordCounts(TOKENIZER).count(text) == TOKENIZER.count(text)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=30))
def test_word_counts_equal_the_tokenizers_count_for_words_joined_by_spaces(words):
    counts = WordCounts(TOKENIZER)
    text = " ".join(words)
    assert counts.count(text) == TOKENIZER.count(text)
    assert counts.count(text) == TOKENIZER.count(text), "the second count, from remembered words, as well"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(ALPHABET, max_size=20).map("".join), max_size=12), st.lists(st.integers(0, 11), max_size=6))
def test_many_counts_equal_the_tokenizers_count_of_each_text(texts, known):
    counts = WordCounts(TOKENIZER)
    for i in known:  # some texts' words remembered beforehand, the others new
        if i < len(texts):
            counts.count(texts[i])
    assert counts.count_many(texts) == [TOKENIZER.count(text) for text in texts]
    assert counts.count_many(texts) == [TOKENIZER.count(text) for text in texts], "from remembered words"


@settings(max_examples=300, deadline=None)
@given(st.lists(ALPHABET, min_size=1, max_size=80).map("".join), st.data())
def test_span_counts_equal_the_tokenizers_count_of_the_span(text, data):
    counts = WordCounts(TOKENIZER)
    span = counts.spans(text)
    for _ in range(8):
        x = data.draw(st.integers(0, len(text) - 1))
        y = data.draw(st.integers(x + 1, len(text)))
        assert span(x, y) == TOKENIZER.count(text[x:y]), (x, y)


def test_span_counts_of_a_long_run_without_spaces_are_exact_and_not_remembered():
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    run = "".join(alphabet[(i * 7919) % 64] for i in range(3000))
    text = f"Intro words here.\n\n{run}\n\nOutro words."
    counts = WordCounts(TOKENIZER)
    span = counts.spans(text)
    start = text.index(run)
    cuts = [(start, start + n) for n in (100, 777, 2999)] + [(start + 5, len(text)), (0, start + 1500)]
    assert [span(x, y) for x, y in cuts] == [TOKENIZER.count(text[x:y]) for x, y in cuts]
    assert max(map(len, counts._counts)) <= len(text), "the document's own words only"
    assert not any(text[x:y] in counts._counts for x, y in cuts[:3]), "cuts inside the run are not kept"


def test_spans_count_remembered_words_of_255_tokens_and_more_exactly():
    """A word of 64 characters outside the vocabulary spends four byte tokens on each: 257 tokens,
    more than the byte each remembered count is first read as."""
    heavy = "\U0001d518" * 64  # 257 tokens
    edge = "\U0001d518" * 63 + "\u02ac"  # 255
    under = "\U0001d518" * 63 + "a"  # 254
    counts = WordCounts(TOKENIZER)
    for text in (f"{heavy} and {edge} so\n{heavy}", f"so {edge}\nand {under}", f"{under} {under}"):
        counts.count(text)  # its words remembered
        span = counts.spans(text)
        cuts = [(x, y) for x in range(0, len(text), 7) for y in range(x + 1, len(text) + 1, 11)] + [(0, len(text))]
        assert [span(x, y) for x, y in cuts] == [TOKENIZER.count(text[x:y]) for x, y in cuts]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(ALPHABET, max_size=12).map("".join), max_size=40))
def test_words_counted_together_count_as_each_alone(words):
    """count_words encodes the words joined by spaces once and cuts the pieces at word starts."""
    assert TOKENIZER.count_words(words) == [TOKENIZER.count(word) for word in words]


def test_only_a_tokenizer_that_cuts_at_spaces_is_counted_by_words():
    assert TOKENIZER.splits_at_spaces, "mistral-embed's SentencePiece model cuts at spaces"
    assert not tokenizer_for("codestral-embed").splits_at_spaces, "tekken attaches a space to the next word"
    assert chunk_counter("codestral-embed") is tokenizer_for("codestral-embed")


def test_remembered_words_are_forgotten_past_the_cap(monkeypatch):
    monkeypatch.setattr(WordCounts, "MAX_WORDS", 3)
    counts = WordCounts(TOKENIZER)
    assert counts.count("one two three four five") == TOKENIZER.count("one two three four five")
    assert len(counts._counts) <= 5
    assert counts.count("six seven") == TOKENIZER.count("six seven")
    assert len(counts._counts) <= 3


# What numbers and words glued by line breaks are made of, with the space mark and a byte piece's name.
GLUED = st.sampled_from(
    ["0", "7", "42", "1.5", "\n", "\n\n", "a", "On", "é", "東", ",", "#", "\t", "▁", "<0x0A>", "\r"]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(GLUED, min_size=1, max_size=12))
def test_numbers_and_words_glued_by_line_breaks_count_from_their_parts_as_the_tokenizer_counts_them(parts):
    word = "".join(parts)
    counts = WordCounts(TOKENIZER)
    assert counts.count_many(["warm", word]) == [TOKENIZER.count("warm"), TOKENIZER.count(word)]
    assert counts.spans(f"x {word} y")(2, 2 + len(word)) == TOKENIZER.count(word)


def test_a_new_number_or_glued_word_costs_no_pass_of_the_tokenizer_once_its_parts_are_known(monkeypatch):
    counts = WordCounts(TOKENIZER)
    counts.count("at 62142, the margin\n\nOn 7 records")
    assert "62142," not in counts._counts and "margin\n\nOn" not in counts._counts, "the memory keeps parts only"
    passes = []
    monkeypatch.setattr(counts, "_count_words", lambda words: passes.append(words) or TOKENIZER.count_many(words))
    text = "at 98263, the margin\n\n\nOn 3 records"
    assert counts.count(text) == TOKENIZER.count(text)
    assert passes == [], "every part was remembered: 00000, margin \\nOn and the line break"


def _tokenizer_with_pieces(pieces: list[str]):
    """mistral-embed's tokenizer with another vocabulary's pieces, for the rules read from it."""
    tokenizer = type(TOKENIZER).__new__(type(TOKENIZER))
    tokenizer.__dict__.update(TOKENIZER.__dict__)
    for rule in ("digits_alone", "lines_alone"):
        tokenizer.__dict__.pop(rule, None)
    tokenizer.__dict__["_pieces"] = pieces
    return tokenizer


def test_the_rules_for_digits_and_line_breaks_hold_only_for_a_vocabulary_that_keeps_them_alone():
    assert TOKENIZER.digits_alone and TOKENIZER.lines_alone, "mistral-embed: digits and line breaks are tokens alone"
    plain = ["▁", "a", "▁a", "0", "1", "<0x0A>", "<0x30>", "<unk>"]
    assert _tokenizer_with_pieces(plain).digits_alone and _tokenizer_with_pieces(plain).lines_alone
    assert not _tokenizer_with_pieces([*plain, "▁1"]).digits_alone, "a piece holding a digit and a space mark"
    assert not _tokenizer_with_pieces([*plain, "19"]).digits_alone, "a piece of two digits"
    assert not _tokenizer_with_pieces([*plain, "a\n"]).lines_alone, "a piece holding a line break"
    codestral = tokenizer_for("codestral-embed")
    assert not getattr(codestral, "digits_alone", False) and not getattr(codestral, "lines_alone", False)


@settings(max_examples=150, deadline=None)
@given(st.lists(ALPHABET, max_size=80).map("".join))
def test_word_counts_without_the_vocabulary_rules_are_exact_as_well(text):
    class Plain:  # the tokenizer's counts, without digits_alone and lines_alone
        count = staticmethod(TOKENIZER.count)
        count_many = staticmethod(TOKENIZER.count_many)
        count_words = staticmethod(TOKENIZER.count_words)

    counts = WordCounts(Plain())  # type: ignore[arg-type]
    assert counts.count(text) == TOKENIZER.count(text)
    if text:
        assert counts.spans(text)(0, len(text)) == TOKENIZER.count(text)


def test_words_glued_at_a_paragraphs_end_are_known_words_in_a_documents_spans(monkeypatch):
    """A line break starts a word in a document's spans, so the words glued at a paragraph's end
    ("margin\n\nOn") are words the memory knows, whatever pair of paragraphs they join: neither
    counted from their parts one by one (_count_new) nor by the tokenizer."""
    counts = WordCounts(TOKENIZER)
    counts.spans("the margin\n\nOn records \nend\n")
    new_words = []
    count_new = counts._count_new
    monkeypatch.setattr(
        counts, "_count_new", lambda words, missing: new_words.append(missing) or count_new(words, missing)
    )
    monkeypatch.setattr(counts, "_tokenizer", None)  # any count by the tokenizer would fail
    text = "the records\n\n\nOn margin \nend\n\nOn"
    span = counts.spans(text)
    assert new_words == []
    cuts = [(0, len(text)), (0, text.index("\n")), (text.index("On"), len(text)), (4, text.index("end") + 4)]
    for x, y in cuts:
        assert span(x, y) == TOKENIZER.count(text[x:y]), text[x:y]
