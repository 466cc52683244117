"""source-mistral never follows a redirect: following one sent the key to another host and read what
that host answered (check reported "model not offered", read ended with 0 records and exit code 0).
A 3xx ends check and read with a config error that names the host it pointed to, never the key, and
says to set `base_url` to the API's own address."""

from __future__ import annotations

import pytest
from airbyte_cdk.models import FailureType, Status, SyncMode
from airbyte_cdk.test.catalog_builder import CatalogBuilder
from airbyte_cdk.test.entrypoint_wrapper import read

from integration_tests.test_source_outside_findings import _connection_status, _errors, _run
from mistral_emulator import EmulatorServer, EmulatorSettings
from source_mistral.source import SourceMistral

KEY = "redirect-key-REDIRECTED-0123"
QUERY_PLACEMENT = {"method": "query_parameter", "parameter_name": "api_token"}
SIZES = dict(files=5, batch_jobs=3, agents=2, fine_tuning_jobs=1)


@pytest.fixture
def hosts():
    """The API, which redirects every request, and the host it points to (under another name), whose
    request counts show whether anything reached it."""
    settings = EmulatorSettings(seed=3, **SIZES, auth_query_params=("api_token",))
    with (
        EmulatorServer(api_key=KEY, settings=settings.copy()) as api,
        EmulatorServer(api_key=KEY, settings=settings.copy()) as other,
    ):
        other_url = other.base_url.replace("127.0.0.1", "localhost")
        api.configure(redirect_to=other_url)
        yield api, other, other_url


def _config(api, placement=None):
    config = {"api_key": KEY, "base_url": api.base_url}
    if placement:
        config["key_placement"] = placement
    return config


def _received(other) -> int:
    return sum(sum(outcomes.values()) for outcomes in other.stats()["routes"].values())


def _assert_clear_redirect_message(message: str, other_url: str) -> None:
    assert "redirect" in message and other_url in message, message
    assert "`base_url`" in message, message
    assert KEY not in message and "api_token" not in message, message


@pytest.mark.parametrize("placement", [None, QUERY_PLACEMENT], ids=["bearer", "query"])
def test_check_refuses_a_redirect_naming_the_host_it_points_to_and_base_url(hosts, placement):
    api, other, other_url = hosts
    config = _config(api, placement)
    source = SourceMistral(config=config)
    status = source.check(None, source.configure(config, "/tmp"))
    assert status.status == Status.FAILED
    assert "not offered" not in status.message, status.message
    _assert_clear_redirect_message(status.message, other_url)
    assert _received(other) == 0, "nothing, and so no key, reaches the host the redirect names"


@pytest.mark.parametrize("status_code", [301, 302, 307, 308])
@pytest.mark.parametrize("placement", [None, QUERY_PLACEMENT], ids=["bearer", "query"])
def test_read_fails_with_a_config_error_on_a_redirect_instead_of_reading_the_other_host(hosts, status_code, placement):
    api, other, other_url = hosts
    api.configure(redirect_status=status_code)
    config = _config(api, placement)
    catalog = CatalogBuilder().with_stream("models", SyncMode.full_refresh).with_stream("files", SyncMode.full_refresh)
    catalog = catalog.build()
    output = read(SourceMistral(config=config, catalog=catalog), config, catalog, expecting_exception=True)
    assert not output.records, "no record comes from the host the redirect names"
    errors = [m.trace.error for m in output.errors]
    assert errors and all(e.failure_type == FailureType.config_error for e in errors), errors
    _assert_clear_redirect_message(errors[0].message, other_url)
    assert f"HTTP {status_code}" in errors[0].message, errors[0].message
    assert _received(other) == 0, "nothing, and so no key, reaches the host the redirect names"


def test_read_on_a_redirect_exits_non_zero_with_the_message_and_no_key_in_the_output(hosts, tmp_path):
    api, other, other_url = hosts
    run = _run(tmp_path, "read", _config(api, QUERY_PLACEMENT), ("models", "files"))
    assert run.returncode != 0, "a read that reads nothing because of a redirect is not a success"
    errors = _errors(run.stdout)
    assert errors and errors[0]["failure_type"] == "config_error", run.stdout[-2000:]
    _assert_clear_redirect_message(errors[0]["message"], other_url)
    assert KEY not in run.stdout + run.stderr
    assert _received(other) == 0


def test_check_command_on_a_redirect_answers_failed_with_the_message(hosts, tmp_path):
    api, other, other_url = hosts
    run = _run(tmp_path, "check", _config(api))
    status = _connection_status(run.stdout)
    assert status and status["status"] == "FAILED", run.stdout[-2000:]
    _assert_clear_redirect_message(status["message"], other_url)
    assert KEY not in run.stdout + run.stderr
