"""The emulator's embeddings must carry meaning (shared words → closer) and be exactly reproducible."""

import base64

import numpy as np

from mistral_emulator.embeddings import cosine, embed_texts, quantize, to_base64


def test_texts_sharing_words_are_closer_than_unrelated_texts():
    query = "refund for a broken coffee machine"
    candidates = [
        "my coffee machine arrived broken, I want a refund",
        "the coffee was great this morning",
        "quarterly earnings beat analyst expectations",
    ]
    m = embed_texts([query, *candidates], 1024)
    sims = [cosine(m[0], m[i]) for i in range(1, 4)]
    assert sims[0] > sims[1] > sims[2], f"similarity should follow word overlap, got {sims}"


def test_vectors_are_unit_length_dense_and_deterministic():
    a = embed_texts(["hello world", "another text"], 1024)
    b = embed_texts(["another text", "hello world"], 1024)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5), "vectors must be L2-normalised"
    assert np.array_equal(a[0], b[1]), "a text's vector must not depend on its batch or position"
    assert (a != 0).all(), "real embeddings have no zero dimensions; neither should these"


def test_requested_dimension_is_respected():
    for dim in (256, 1536, 3072):
        assert embed_texts(["some code"], dim).shape == (1, dim)


def test_base64_is_little_endian_float32_of_the_same_vector():
    row = embed_texts(["base64 please"], 64)[0]
    decoded = np.frombuffer(base64.b64decode(to_base64(row)), dtype="<f4")
    assert np.array_equal(decoded, row), "base64 must decode to the float vector"


def test_binary_output_packs_one_bit_per_dimension():
    m = embed_texts(["bits"], 64)
    assert quantize(m, "ubinary").shape == (1, 8)
    assert quantize(m, "int8").dtype == np.int8
