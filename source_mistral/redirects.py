"""Redirects are refused, never followed.

`requests` follows a 3xx by itself, before the CDK's error handler sees anything: the key travels to
the host the redirect names (in the query string with query placement; in the Authorization header
when the redirect stays on the same host), and the source then reads whatever that host answers, so
`check` reported a misleading "model not offered" and `read` ended with 0 records and exit code 0.
The manifest has no setting for it, so the authenticator, which every request of every stream goes
through, hooks each request: a 3xx answer raises RedirectRefused before `requests` can follow it,
and MistralErrorHandler turns it into a config error naming the host the redirect pointed to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import InitVar, dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from airbyte_cdk.sources.declarative.auth.declarative_authenticator import DeclarativeAuthenticator


class RedirectRefused(requests.RequestException):
    """A 3xx answer, stopped before `requests` followed it."""

    def __init__(self, response: requests.Response) -> None:
        self.status = response.status_code
        self.route = f"{response.request.method} {urlsplit(response.request.url or '').path}"
        self.target = _host_of(urljoin(response.request.url or "", response.headers.get("Location", "")))
        super().__init__(f"HTTP {self.status} redirect to {self.target}", response=None, request=None)

    @property
    def message(self) -> str:
        return (
            f"The API answered {self.route} with a redirect (HTTP {self.status}) to {self.target}, which "
            "source-mistral does not follow, so that the key only goes to the configured host: set `base_url` "
            "to the address the Mistral API is served from (e.g. https://api.mistral.ai, or the proxy's own "
            "address)."
        )


def _host_of(url: str) -> str:
    """Scheme, host and port only: the path and query of a redirect may carry the key back, and a
    user:password part is a secret too."""
    parts = urlsplit(url)
    if not parts.hostname:
        return "another address"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}" if parts.scheme else f"{parts.hostname}{port}"


def refuse_redirect(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    """A `requests` response hook: response hooks run before redirects are resolved."""
    if response.is_redirect:
        response.close()
        raise RedirectRefused(response)
    return response


@dataclass
class RedirectRefusingAuthenticator(DeclarativeAuthenticator):
    """The manifest's authenticator (`authenticator`), plus the hook above on every request."""

    authenticator: DeclarativeAuthenticator
    config: Mapping[str, Any]
    parameters: InitVar[Mapping[str, Any]]

    def __post_init__(self, parameters: Mapping[str, Any]) -> None:
        self._parameters = parameters

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request = self.authenticator(request)
        # The CDK authenticates a request again on each retry: the hook is registered once.
        hooks = request.hooks.setdefault("response", [])
        if refuse_redirect not in hooks:
            hooks.append(refuse_redirect)
        return request

    @property
    def auth_header(self) -> str:
        return self.authenticator.auth_header

    @property
    def token(self) -> str:
        return self.authenticator.token

    def get_auth_header(self) -> Mapping[str, Any]:
        return self.authenticator.get_auth_header()

    def get_request_params(self) -> Mapping[str, Any]:
        return self.authenticator.get_request_params()

    def get_request_body_data(self) -> Mapping[str, Any] | str:
        return self.authenticator.get_request_body_data()

    def get_request_body_json(self) -> Mapping[str, Any]:
        return self.authenticator.get_request_body_json()
