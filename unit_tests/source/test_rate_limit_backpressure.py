"""A 429 is the API's queue, not a failure: the source waits as Retry-After says, however many times
a request is refused, and fails (as a transient error) only when the API has served no request for
the error handler's max_time. Failures proper (5xx, dropped connections) keep their bounded retries."""

from __future__ import annotations

import itertools
from unittest import TestCase, mock

from airbyte_cdk.models import FailureType
from airbyte_cdk.test.entrypoint_wrapper import read
from airbyte_cdk.test.mock_http import HttpMocker

from source_mistral import components
from source_mistral.source import SourceMistral
from unit_tests.source.mistral_responses import CONFIG, catalog, json_response, model_card, request

RATE_LIMITED = {"object": "error", "message": "Rate limit exceeded", "type": "rate_limited", "code": "1300"}


def _refused(retry_after: str = "1"):
    return json_response(RATE_LIMITED, 429, {"Retry-After": retry_after})


def _server_error():
    return json_response({"object": "error", "message": "boom", "type": "server_error"}, 503)


def _models():
    return json_response(
        {"object": "list", "data": [model_card("mistral-small-2603"), model_card("mistral-embed", chat=False)]}
    )


class _Sleeps:
    """time.sleep, recorded instead of slept."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


def _read_models(clock=None):
    """A read of `models` with sleeps recorded, not slept, the clock the handler reads given, and no
    success remembered from an earlier read.
    The call budget's pause after a 429 runs on real time of its own (pyrate_limiter's clock) and
    is not what these tests are about, so the budget does not learn from the answers here."""
    sleeps = _Sleeps()
    with (
        mock.patch("time.sleep", sleeps),
        mock.patch("source_mistral.components._clock", clock or itertools.count().__next__),
        mock.patch("source_mistral.components._API_PROGRESS", components._ApiProgress()),
        mock.patch("airbyte_cdk.sources.streams.call_rate.HttpAPIBudget.update_from_response"),
    ):
        output = read(SourceMistral(config=CONFIG), CONFIG, catalog("models"), expecting_exception=True)
    return output, sleeps


class RateLimitBackpressureTest(TestCase):
    @HttpMocker()
    def test_a_request_refused_more_often_than_max_retries_is_waited_out_and_read(
        self, http_mocker: HttpMocker
    ) -> None:
        # max_retries is 6 in the manifest; twenty refusals in a row are still only a queue.
        http_mocker.get(request("models"), [_refused() for _ in range(20)] + [_models()])
        output, sleeps = _read_models()
        assert not output.errors, output.get_formatted_error_message()
        assert len(output.records) == 2
        # Each refusal waits Retry-After (1 s) plus the CDK's one-second margin.
        assert sleeps.seconds.count(2) >= 20, sleeps.seconds

    @HttpMocker()
    def test_refusals_fail_as_transient_only_once_the_api_served_nothing_for_max_time(
        self, http_mocker: HttpMocker
    ) -> None:
        models = request("models")
        http_mocker.get(models, _refused())
        clock = itertools.count(step=50).__next__  # 50 s pass between two looks at the clock
        output, _ = _read_models(clock)
        errors = [m.trace.error for m in output.errors]
        assert errors, "an API that refuses everything for ever must end the read"
        assert {e.failure_type for e in errors} == {FailureType.transient_error}, errors
        assert any("HTTP 429" in (e.message or "") and "600 seconds" in (e.message or "") for e in errors), [
            e.message for e in errors
        ]
        assert "COMPLETE" not in [s.name for s in output.get_stream_statuses("models")]
        # 600 s of refusals at 50 s per look: the thirteenth refusal is the first past the window.
        http_mocker.assert_number_of_calls(models, 13)

    @HttpMocker()
    def test_server_errors_after_many_refusals_keep_their_six_retries_and_first_retry_wait(
        self, http_mocker: HttpMocker
    ) -> None:
        models = request("models")
        http_mocker.get(models, [_refused() for _ in range(10)] + [_server_error()])
        output, sleeps = _read_models()
        errors = [m.trace.error for m in output.errors]
        assert errors, "a server that keeps failing must end the read"
        assert {e.failure_type for e in errors} == {FailureType.transient_error}, errors
        assert any("server error" in (e.message or "") for e in errors), [e.message for e in errors]
        # Ten refusals, then the failing attempt and its six retries.
        http_mocker.assert_number_of_calls(models, 10 + 7)
        # The first 5xx waits as a first failure (2 s, plus the CDK's margin), not 2**11 s for the
        # eleventh attempt of the request.
        waits = [seconds for seconds in sleeps.seconds if seconds]  # the call budget's zero waits aside
        assert waits == [2] * 10 + [3, 5, 9, 17, 33, 65], sleeps.seconds
