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
