"""What the source does when the API says no: invalid keys end the sync as a config error in one
sentence, rate limits and server errors are retried, and a removed endpoint is skipped."""

from unittest import TestCase

from airbyte_cdk.models import FailureType, Status
from airbyte_cdk.test.entrypoint_wrapper import read
from airbyte_cdk.test.mock_http import HttpMocker

from source_mistral.source import SourceMistral
from unit_tests.source.mistral_responses import CONFIG, KEY, catalog, json_response, mock_estimate, model_card, request


def _models_body():
    return {
        "object": "list",
        "data": [
            model_card("mistral-small-2603", aliases=["mistral-small-latest"]),
            model_card("mistral-embed", chat=False),
        ],
    }


class ErrorHandlingTest(TestCase):
    @HttpMocker()
    def test_error_handling_invalid_key_is_a_config_error_that_names_the_field(self, http_mocker: HttpMocker) -> None:
        http_mocker.get(request("models"), json_response({"message": "Unauthorized", "request_id": "0" * 32}, 401))
        output = read(SourceMistral(config=CONFIG), CONFIG, catalog("models"), expecting_exception=True)
        errors = [e.trace.error for e in output.errors]
        assert errors, "a rejected key must end the sync with an error trace"
        assert errors[0].failure_type == FailureType.config_error, errors[0]
        assert "`api_key`" in errors[0].message, errors[0].message
        assert KEY not in "\n".join(str(m) for m in output._messages), "the key must not appear in any message"

    @HttpMocker()
    def test_error_handling_rate_limit_waits_for_retry_after_then_succeeds(self, http_mocker: HttpMocker) -> None:
        http_mocker.get(
            request("models"),
            [
                json_response(
                    {"object": "error", "message": "Rate limit exceeded", "type": "rate_limited", "code": "1300"},
                    429,
                    {"Retry-After": "1"},
                ),
                json_response(_models_body()),
            ],
        )
        output = read(SourceMistral(config=CONFIG), CONFIG, catalog("models"))
        assert len(output.records) == 2, "the models must be read after one rate-limited attempt"
        assert not output.errors

    @HttpMocker()
    def test_error_handling_server_errors_are_retried(self, http_mocker: HttpMocker) -> None:
        http_mocker.get(
            request("models"),
            [
                json_response({"object": "error", "message": "boom", "type": "server_error"}, 503),
                json_response(_models_body()),
            ],
        )
        output = read(SourceMistral(config=CONFIG), CONFIG, catalog("models"))
        assert len(output.records) == 2 and not output.errors

    @HttpMocker()
    def test_error_handling_removed_fine_tuning_endpoint_is_skipped_with_a_warning(
        self, http_mocker: HttpMocker
    ) -> None:
        mock_estimate(http_mocker, "fine_tuning/jobs", None)
        http_mocker.get(request("fine_tuning/jobs", page=0, page_size=100), json_response({"detail": "Not Found"}, 404))
        output = read(SourceMistral(config=CONFIG), CONFIG, catalog("fine_tuning_jobs"))
        assert not output.errors, "a 404 for fine-tuning jobs must not fail the sync"
        assert output.records == []
        assert output.is_in_logs("Skipping stream fine_tuning_jobs"), "the skip must be explained in the logs"
        assert output.is_in_logs("HTTP 404 for GET /v1/fine_tuning/jobs"), "the warning names the route"

    @HttpMocker()
    def test_error_handling_a_list_route_answered_405_is_skipped_with_a_warning_naming_stream_and_route(
        self, http_mocker: HttpMocker
    ) -> None:
        http_mocker.get(request("agents/pages", page_size=100), json_response({"detail": "Method Not Allowed"}, 405))
        output = read(SourceMistral(config=CONFIG), CONFIG, catalog("agents"))
        assert not output.errors, "a route the API does not serve must not fail the sync"
        assert output.records == []
        warnings = [m.log.message for m in output.logs if m.log.level.name == "WARN"]
        assert any(
            w.startswith("Skipping stream agents:") and "HTTP 405 for GET /v1/agents/pages" in w for w in warnings
        )

    @HttpMocker()
    def test_error_handling_other_client_errors_still_fail_the_stream(self, http_mocker: HttpMocker) -> None:
        http_mocker.get(request("agents/pages", page_size=100), json_response({"detail": "Bad page_size"}, 422))
        output = read(SourceMistral(config=CONFIG), CONFIG, catalog("agents"), expecting_exception=True)
        assert output.errors, "a refusal that is not an absent route fails the stream"

    @HttpMocker()
    def test_query_parameter_placement_sends_the_key_in_the_query_not_a_header(self, http_mocker: HttpMocker) -> None:
        config = {
            **CONFIG,
            "base_url": "https://api.mistral.ai",
            "key_placement": {"method": "query_parameter", "parameter_name": "api_token"},
        }
        http_mocker.get(request("models", api_token=KEY), json_response(_models_body()))
        output = read(SourceMistral(config=config), config, catalog("models"))
        assert len(output.records) == 2 and not output.errors


class CheckTest(TestCase):
    @HttpMocker()
    def test_check_succeeds_for_a_model_known_by_its_alias(self, http_mocker: HttpMocker) -> None:
        http_mocker.get(request("models"), json_response(_models_body()))
        source = SourceMistral(config=CONFIG)
        status = source.check(None, source.configure(CONFIG, "/tmp"))
        assert status.status == Status.SUCCEEDED, status.message

    @HttpMocker()
    def test_check_names_the_closest_models_for_an_unknown_one(self, http_mocker: HttpMocker) -> None:
        http_mocker.get(request("models"), json_response(_models_body()))
        config = {**CONFIG, "model": "mistral-smal-latest"}
        source = SourceMistral(config=config)
        status = source.check(None, source.configure(config, "/tmp"))
        assert status.status == Status.FAILED
        assert "'mistral-small-latest'" in status.message and "`model`" in status.message, status.message

    @HttpMocker()
    def test_check_fails_when_the_models_route_answers_405(self, http_mocker: HttpMocker) -> None:
        http_mocker.get(request("models"), json_response({"detail": "Method Not Allowed"}, 405))
        source = SourceMistral(config=CONFIG)
        status = source.check(None, source.configure(CONFIG, "/tmp"))
        assert status.status == Status.FAILED
        assert "GET /v1/models (HTTP 405)" in status.message and "`base_url`" in status.message, status.message

    @HttpMocker()
    def test_check_reports_an_invalid_key_in_one_sentence(self, http_mocker: HttpMocker) -> None:
        http_mocker.get(request("models"), json_response({"message": "Unauthorized"}, 401))
        source = SourceMistral(config=CONFIG)
        status = source.check(None, source.configure(CONFIG, "/tmp"))
        assert status.status == Status.FAILED
        assert "rejected the API key" in status.message, status.message
