"""A malformed credential value must end `check`, `read` and `write` with a config error that names
the field and the fix, for both connectors, never with a Python traceback, and never echo the key."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_mistral.settings import parse_config
from mistral_connection import MistralConnection, normalize_config
from source_mistral.source import SourceMistral

BIN = Path(sys.executable).parent
SECRET = "sk-SECRET-4f7a9"

BAD_BASE_URLS = [
    ("https://api.mistral.ai:99999", "port 99999, which is not a valid port (1–65535)"),
    ("http://[::1]:70000/v1", "port 70000"),
    ("https://api.mistral.ai:0", "port 0"),
    ("https://api.mistral.ai:abc", "port that is not a number"),
    ("javascript:alert(1)", "javascript: scheme"),
    ("file:///etc/passwd", "file:// scheme"),
    ("file:/etc/passwd", "file: scheme"),
    ("ftp://api.mistral.ai", "ftp:// scheme"),
    ("https://", "no host name"),
    ("https://:8443/v1", "no host name"),
    ("https://api mistral.ai", "contains a space"),
    ("https://api.mistral.ai/v1 /chat", "contains a space"),
    ("https://api.mistral\n.ai", "contains a line break"),
    ("https://[::1/v1", "malformed host"),
    ("https://api<mistral>.ai", "host name with characters"),
    (8443, "must be text"),
]

BAD_KEYS = [
    (SECRET + "\r\nX-Injected: 1", "a line break"),
    (SECRET + "\n", None),  # a trailing newline is trimmed like other surrounding whitespace
    (SECRET[:5] + "\x00" + SECRET[5:], "control character"),
    (SECRET[:5] + "\x7f" + SECRET[5:], "control character"),
    (SECRET[:5] + "\t" + SECRET[5:], "a tab"),
    (SECRET[:5] + "é" + SECRET[5:], "non-ASCII character"),
    ("“" + SECRET + "”", "non-ASCII character"),
    (SECRET[:5] + "中" + SECRET[5:], "non-ASCII character"),
    ("", "missing or blank"),
    ("   \t ", "missing or blank"),
    (None, "missing or blank"),
    (12345, "must be text"),
    (SECRET + "x" * 9000, "more than the 1024"),
]


def _config_error(call) -> AirbyteTracedException:
    with pytest.raises(AirbyteTracedException) as raised:
        call()
    assert raised.value.failure_type == FailureType.config_error, raised.value.failure_type
    return raised.value


def _shared_entry_points(config):
    """What each connector calls first with its config: the source's constructor (normalize_config)
    and the destination's parse_config (MistralConnection.from_config)."""
    destination_config = dict(config, enrichment={"mode": "none"}, output={"type": "jsonl", "directory": "out"})
    return [
        lambda: normalize_config(config),
        lambda: MistralConnection.from_config(config),
        lambda: SourceMistral(config=config),
        lambda: parse_config(destination_config),
    ]


@pytest.mark.parametrize("base_url, words", BAD_BASE_URLS, ids=[repr(u) for u, _ in BAD_BASE_URLS])
def test_malformed_base_url_is_a_config_error_naming_the_field_and_the_problem(base_url, words):
    for call in _shared_entry_points({"api_key": SECRET, "base_url": base_url}):
        error = _config_error(call)
        assert "`base_url`" in error.message and words in error.message, error.message
        assert SECRET not in error.message and SECRET not in (error.internal_message or "")


@pytest.mark.parametrize("key, words", BAD_KEYS, ids=[repr(k) for k, _ in BAD_KEYS])
def test_key_unfit_for_an_http_header_is_a_config_error_that_never_echoes_it(key, words):
    config = {"api_key": key}
    if words is None:
        assert MistralConnection.from_config(config).api_key == SECRET
        return
    for call in _shared_entry_points(config):
        error = _config_error(call)
        assert "`api_key`" in error.message and words in error.message, error.message
        for text in (error.message, error.internal_message or "", str(error)):
            assert SECRET not in text and SECRET[:8] not in text, "the key must never be echoed"


def test_internationalised_host_is_sent_in_its_ascii_form():
    assert (
        MistralConnection.from_config({"api_key": "k", "base_url": "https://bücher.example/v1"}).api_root
        == "https://xn--bcher-kva.example/v1"
    )


@pytest.mark.parametrize(
    "placement, words",
    [
        ("query_parameter", "must be an object"),
        ({"method": "query_parameter", "parameter_name": "api token"}, "may hold only"),
        ({"method": "query_parameter", "parameter_name": 7}, "`key_placement.parameter_name` must be text"),
        ({"method": "query_parameter", "parameter_name": "  "}, "is empty"),
        # A field the placement does not have would be ignored, and the key sent where not asked.
        (
            {"method": "bearer_header", "parameter_name": "token"},
            "`key_placement.parameter_name` belongs to the query_parameter method",
        ),
        ({"method": "query_parameter", "paramter_name": "token"}, "Did you mean `parameter_name`?"),
        ({"metod": "query_parameter"}, "Did you mean `method`?"),
        ({"method": "bearer_header", "foo": 1}, "`key_placement.foo` is not a field of `key_placement`"),
    ],
)
def test_malformed_key_placement_is_a_config_error_naming_the_field(placement, words):
    error = _config_error(lambda: normalize_config({"api_key": SECRET, "key_placement": placement}))
    assert "`key_placement" in error.message and words in error.message, error.message


def _run(args, tmp_path, config, stdin=b""):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    done = subprocess.run(
        [str(BIN / args[0]), *args[1:], "--config", str(path)], input=stdin, capture_output=True, timeout=120
    )
    return done.stdout.decode(), done.stderr.decode()


def _failure_messages(stdout):
    """The messages of CONNECTION_STATUS FAILED and TRACE config_error lines."""
    found = []
    for line in stdout.splitlines():
        message = json.loads(line)
        if message["type"] == "CONNECTION_STATUS" and message["connectionStatus"]["status"] == "FAILED":
            found.append(message["connectionStatus"]["message"])
        if message["type"] == "TRACE" and message["trace"].get("error", {}).get("failure_type") == "config_error":
            found.append(message["trace"]["error"]["message"])
    return found


CLI_CASES = {
    "port out of range": ({"base_url": "https://api.mistral.ai:99999"}, "`base_url` has port 99999"),
    "javascript scheme": ({"base_url": "javascript:alert(1)"}, "`base_url` uses the javascript: scheme"),
    "line break in the key": ({"api_key": SECRET + "\r\nX-Injected: 1"}, "`api_key` contains a line break"),
    "non-ASCII key": ({"api_key": "“" + SECRET + "”"}, "`api_key` contains a non-ASCII character"),
    "blank key": ({"api_key": "   "}, "`api_key` is missing or blank"),
    "misspelt placement field": (
        {"key_placement": {"method": "query_parameter", "paramter_name": "token"}},
        "Did you mean `parameter_name`?",
    ),
}


@pytest.mark.parametrize("connector", ["source-mistral", "destination-mistral"])
@pytest.mark.parametrize("override, words", list(CLI_CASES.values()), ids=list(CLI_CASES))
def test_check_through_the_cli_fails_with_the_field_named_and_no_traceback(connector, override, words, tmp_path):
    config = {
        "api_key": SECRET,
        "enrichment": {"mode": "none"},
        "output": {"type": "jsonl", "directory": str(tmp_path / "out")},
    }
    config.update(override)
    stdout, stderr = _run([connector, "check"], tmp_path, config)
    messages = _failure_messages(stdout)
    assert messages and all(words in m for m in messages), stdout
    assert "Traceback" not in stderr and "Traceback" not in stdout, stderr
    assert SECRET not in stdout and SECRET not in stderr, "the key must never be echoed"


@pytest.mark.parametrize(
    "override, words",
    [CLI_CASES["port out of range"], CLI_CASES["line break in the key"]],
    ids=["port out of range", "line break in the key"],
)
def test_write_and_read_through_the_cli_stop_with_a_config_error_naming_the_field(override, words, tmp_path):
    config = {
        "api_key": SECRET,
        "enrichment": {"mode": "none"},
        "output": {"type": "jsonl", "directory": str(tmp_path / "out")},
    }
    config.update(override)
    catalog = tmp_path / "catalog.json"
    catalog.write_text(
        json.dumps(
            {
                "streams": [
                    {
                        "stream": {
                            "name": "models",
                            "json_schema": {"type": "object"},
                            "supported_sync_modes": ["full_refresh"],
                        },
                        "sync_mode": "full_refresh",
                        "destination_sync_mode": "append",
                    }
                ]
            }
        )
    )
    for args in (
        ["destination-mistral", "write", "--catalog", str(catalog)],
        ["source-mistral", "read", "--catalog", str(catalog)],
    ):
        stdout, stderr = _run(args, tmp_path, config)
        messages = _failure_messages(stdout)
        assert messages and all(words in m for m in messages), (args[0], stdout, stderr)
        # stdout may carry the stack in the TRACE message's own `stack_trace` field, as the CDK does.
        assert "Traceback" not in stderr, (args[0], stderr)
        assert SECRET not in stdout and SECRET not in stderr, "the key must never be echoed"
