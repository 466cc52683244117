"""A redirect is refused before it is followed, and the message names only the host it points to:
never its path or query (which may carry the key back), nor a user:password part."""

from unittest import TestCase

from airbyte_cdk.models import FailureType
from airbyte_cdk.test.entrypoint_wrapper import read
from airbyte_cdk.test.mock_http import HttpMocker, HttpResponse

from source_mistral.source import SourceMistral
from unit_tests.source.mistral_responses import CONFIG, KEY, catalog, request


def _redirect(location: str, status: int = 307) -> HttpResponse:
    return HttpResponse("", status, {"Location": location})


class RedirectTest(TestCase):
    def _error(self, http_mocker: HttpMocker, location: str, status: int = 307):
        http_mocker.get(request("models"), _redirect(location, status))
        output = read(SourceMistral(config=CONFIG), CONFIG, catalog("models"), expecting_exception=True)
        errors = [e.trace.error for e in output.errors]
        assert errors and errors[0].failure_type == FailureType.config_error, errors
        return errors[0].message

    @HttpMocker()
    def test_redirect_message_names_the_target_host_without_path_query_or_credentials(
        self, http_mocker: HttpMocker
    ) -> None:
        message = self._error(http_mocker, f"https://user:secret@mirror.example:8443/v1/models?api_token={KEY}")
        assert "https://mirror.example:8443" in message and "HTTP 307" in message, message
        assert KEY not in message and "secret" not in message and "api_token" not in message, message

    @HttpMocker()
    def test_relative_redirect_names_the_configured_host(self, http_mocker: HttpMocker) -> None:
        message = self._error(http_mocker, "/elsewhere/v1/models", 301)
        assert "https://api.mistral.ai" in message and "HTTP 301" in message and "`base_url`" in message, message
