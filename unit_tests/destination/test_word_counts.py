"""WordCounts counts a text as the sum of its words' counts, each tokenized once: it must give the
tokenizer's own count for every text, or chunks would break their bound or carry a wrong count."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from destination_mistral.enrich.tokens import WordCounts, chunk_counter, tokenizer_for

TOKENIZER = tokenizer_for("mistral-embed")
# Words, punctuation, digits, accents, CJK, emoji, tabs and new lines, and runs of spaces: what
# documents hold, and the whitespace the word rule must leave to the tokenizer.
ALPHABET = st.sampled_from(list("abcXYZ019.,;:!?'\"()-_/ \t\n") + ["é", "ß", "ж", "東", "京", "😀", "  ", "\n\n"])


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


def test_only_a_tokenizer_that_cuts_at_spaces_is_counted_by_words():
    assert TOKENIZER.splits_at_spaces, "mistral-embed's SentencePiece model cuts at spaces"
    assert not tokenizer_for("codestral-embed").splits_at_spaces, "tekken attaches a space to the next word"
    assert chunk_counter("codestral-embed") == tokenizer_for("codestral-embed").count


def test_remembered_words_are_forgotten_past_the_cap(monkeypatch):
    monkeypatch.setattr(WordCounts, "MAX_WORDS", 3)
    counts = WordCounts(TOKENIZER)
    assert counts.count("one two three four five") == TOKENIZER.count("one two three four five")
    assert len(counts._counts) <= 5
    assert counts.count("six seven") == TOKENIZER.count("six seven")
    assert len(counts._counts) <= 3
