"""A server or proxy that quotes the request in an error answer (its Authorization header, its URL
with a query-parameter key) must not carry the key into messages, logs or error rows: the client
masks it in every error answer, whole or cut short by the server."""

import asyncio

import orjson
import pytest

from destination_mistral.http.client import MistralClient
from destination_mistral.http.errors import ApiError
from destination_mistral.settings import Limits
from mistral_connection import MistralConnection, mask_secret_in

KEY = "sk-TOPSECRET-0123456789/+="


def refusing(body: bytes):
    async def sender(method, url, payload):
        return 400, {}, body

    return sender


def refusal_message(key: str, body: bytes) -> str:
    connection = MistralConnection.from_config({"api_key": key, "base_url": "http://127.0.0.1:1"})
    client = MistralClient(connection, Limits(max_retries=0), sender=refusing(body))
    with pytest.raises(ApiError) as caught:
        asyncio.run(client.post("chat/completions", {}))
    return caught.value.message


def test_a_refusal_quoting_the_authorization_header_is_reported_without_the_key():
    body = orjson.dumps({"message": f"invalid request, header was <Authorization: Bearer {KEY}>"})
    message = refusal_message(KEY, body)
    assert "TOPSECRET" not in message and "invalid request" in message, message


def test_a_refusal_quoting_the_key_url_encoded_or_json_escaped_is_reported_without_it():
    for quoted in ("sk-TOPSECRET-0123456789%2F%2B%3D", "sk-TOPSECRET-0123456789\\/+="):
        message = refusal_message(KEY, b'{"message": "bad url /v1/chat?key=' + quoted.encode() + b'"}')
        assert "TOPSECRET" not in message, message


def test_a_long_key_the_server_quoted_only_in_part_is_masked_too():
    long_key = "sk-TOPSECRET-0123456789" + "x" * 1000  # the longest a config accepts is 1024
    body = b"Got more than 8190 bytes when reading: b'Bearer " + long_key[:900].encode() + b"...'"
    message = refusal_message(long_key, body)
    assert "TOPSECRET" not in message and "8190 bytes" in message, message


def test_masking_leaves_text_that_only_shares_a_few_characters_with_the_key_alone():
    assert mask_secret_in(b"sk-TOP is not the key", KEY) == b"sk-TOP is not the key"
    assert mask_secret_in(b"a " + KEY.encode() + b" b", KEY) == b"a **** b"
