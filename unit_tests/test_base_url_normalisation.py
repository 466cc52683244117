"""Every base-URL form users paste must reach the same API root, and the key must never be sent in
clear to a remote host."""

import pytest
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from mistral_connection import MistralConnection, normalize_config
from mistral_connection.connection import normalize_base_url


@pytest.mark.parametrize(
    "pasted, expected",
    [
        ("https://api.mistral.ai", "https://api.mistral.ai"),
        ("https://api.mistral.ai/", "https://api.mistral.ai"),
        ("https://api.mistral.ai/v1", "https://api.mistral.ai"),
        ("https://api.mistral.ai/v1/", "https://api.mistral.ai"),
        ("https://api.mistral.ai/v1/chat/completions", "https://api.mistral.ai"),
        ("https://api.mistral.ai/v1/embeddings/", "https://api.mistral.ai"),
        ("  https://API.Mistral.ai/v1  ", "https://api.mistral.ai"),
        ("api.mistral.ai", "https://api.mistral.ai"),
        ("https://api.eu.mistral.ai/v1", "https://api.eu.mistral.ai"),
        ("https://api.us.mistral.ai", "https://api.us.mistral.ai"),
        ("https://proxy.example.com/mistral/v1/chat/completions", "https://proxy.example.com/mistral"),
        ("https://proxy.example.com:8443/gw/mistral/", "https://proxy.example.com:8443/gw/mistral"),
        ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080"),
        ("http://localhost:9000", "http://localhost:9000"),
        ("http://[::1]:9000/v1", "http://[::1]:9000"),
    ],
)
def test_every_pasted_base_url_form_reduces_to_one_root(pasted, expected):
    assert normalize_base_url(pasted) == expected, f"{pasted!r} should normalise to {expected!r}"


def test_missing_base_url_means_the_public_api():
    assert normalize_base_url(None) == "https://api.mistral.ai"
    assert normalize_base_url("") == "https://api.mistral.ai"


@pytest.mark.parametrize(
    "remote", ["http://api.mistral.ai", "http://10.0.0.5:8080/v1", "http://proxy.example.com/mistral"]
)
def test_plain_http_to_a_remote_host_is_a_config_error(remote):
    with pytest.raises(AirbyteTracedException) as raised:
        normalize_base_url(remote)
    assert raised.value.failure_type == FailureType.config_error
    assert "base_url" in raised.value.message and "https://" in raised.value.message


@pytest.mark.parametrize(
    "bad, words",
    [
        ("ftp://api.mistral.ai", "not an http"),
        ("https://api.mistral.ai/v1?api_token=abc", "query string"),
        ("https://user:pw@api.mistral.ai", "credentials"),
    ],
)
def test_unusable_base_urls_name_the_field_and_the_fix(bad, words):
    with pytest.raises(AirbyteTracedException) as raised:
        normalize_base_url(bad)
    assert "`base_url`" in raised.value.message and words in raised.value.message
    assert "abc" not in raised.value.message, "a key pasted into the URL must not be echoed back"


def test_missing_api_key_is_a_config_error_naming_the_field():
    with pytest.raises(AirbyteTracedException) as raised:
        normalize_config({"api_key": "  "})
    assert raised.value.failure_type == FailureType.config_error
    assert "`api_key`" in raised.value.message


def test_defaults_fill_model_base_url_and_bearer_placement():
    config = normalize_config({"api_key": " k "})
    assert config == {
        "api_key": "k",
        "model": "mistral-small-latest",
        "base_url": "https://api.mistral.ai",
        "key_placement": {"method": "bearer_header"},
    }


def test_bearer_placement_sends_the_key_in_the_authorization_header_only():
    connection = MistralConnection.from_config({"api_key": "k1", "base_url": "https://api.mistral.ai/v1/"})
    assert connection.auth_headers() == {"Authorization": "Bearer k1"}
    assert connection.auth_params() == {}
    assert connection.url("/embeddings") == "https://api.mistral.ai/v1/embeddings"


def test_query_placement_sends_the_key_as_the_named_parameter_only():
    connection = MistralConnection.from_config(
        {
            "api_key": "k2",
            "base_url": "https://gw.example.com/mistral",
            "key_placement": {"method": "query_parameter", "parameter_name": "api_token"},
        }
    )
    assert connection.auth_headers() == {}
    assert connection.auth_params() == {"api_token": "k2"}
    assert connection.api_root == "https://gw.example.com/mistral/v1"


def test_connection_repr_never_shows_the_key():
    connection = MistralConnection.from_config({"api_key": "very-secret-key"})
    assert "very-secret-key" not in repr(connection)
    assert "very-secret-key" not in str(connection)
