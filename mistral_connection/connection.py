"""The normalised credential block: one API root, one key, one place the key travels."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

from mistral_connection.errors import config_error

DEFAULT_BASE_URL = "https://api.mistral.ai"
DEFAULT_MODEL = "mistral-small-latest"
BEARER = {"method": "bearer_header"}

# Endpoint suffixes users paste after /v1 (Nexla's form asks for the chat endpoint, for instance).
_ENDPOINT_SUFFIXES = (
    "chat/completions",
    "fim/completions",
    "embeddings",
    "moderations",
    "chat/moderations",
    "classifications",
    "models",
    "files",
    "batch/jobs",
    "agents",
    "ocr",
)


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalize_base_url(raw: str | None) -> str:
    """Reduce any pasted form to the root under which `/v1/...` lives, e.g.
    `https://api.mistral.ai/v1/chat/completions/` -> `https://api.mistral.ai`, keeping a proxy's
    path prefix (`https://proxy.example.com/mistral/v1` -> `https://proxy.example.com/mistral`)."""
    text = (raw or DEFAULT_BASE_URL).strip()
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in ("https", "http") or not host:
        raise config_error(f"`base_url` {text!r} is not an http(s) URL: use a form such as {DEFAULT_BASE_URL}.")
    if parts.query or parts.fragment:
        raise config_error(
            "`base_url` must not carry a query string or fragment: put the key in `api_key` and, for a proxy "
            "that reads it from the query, choose `key_placement` = query parameter."
        )
    if parts.username or parts.password:
        raise config_error("`base_url` must not carry credentials: put the key in `api_key`.")
    if scheme == "http" and not _is_loopback(host):
        raise config_error(
            f"`base_url` uses plain http:// to {host}, so the API key would travel in clear: use https:// "
            "(plain http is accepted only for a server on this machine, such as mistral-emulator)."
        )
    path = parts.path.rstrip("/")
    for suffix in _ENDPOINT_SUFFIXES:
        if path.endswith("/v1/" + suffix):
            path = path[: -len(suffix) - 1]
            break
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    if ":" in host:  # an IPv6 literal keeps its brackets
        netloc = f"[{host}]" if parts.port is None else f"[{host}]:{parts.port}"
    return urlunsplit((scheme, netloc, path, "", ""))


def _key_placement(config: Mapping[str, Any]) -> dict[str, str]:
    placement = config.get("key_placement") or BEARER
    method = placement.get("method", "bearer_header")
    if method == "bearer_header":
        return dict(BEARER)
    if method == "query_parameter":
        name = str(placement.get("parameter_name") or "api_token").strip()
        if not name:
            raise config_error("`key_placement.parameter_name` is empty: name the query parameter, e.g. api_token.")
        return {"method": "query_parameter", "parameter_name": name}
    raise config_error(f"`key_placement.method` {method!r} is unknown: use bearer_header or query_parameter.")


def normalize_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as the connectors use it: defaults filled in, base URL reduced to its root.
    Raises a config error naming the field for anything a user must fix."""
    result = dict(config)
    key = result.get("api_key")
    if not isinstance(key, str) or not key.strip():
        raise config_error("`api_key` is missing: paste your Mistral API key from https://console.mistral.ai/api-keys.")
    result["api_key"] = key.strip()
    model = result.get("model") or DEFAULT_MODEL
    if not isinstance(model, str) or not model.strip():
        raise config_error("`model` must be a model id such as mistral-small-latest.")
    result["model"] = model.strip()
    result["base_url"] = normalize_base_url(result.get("base_url"))
    result["key_placement"] = _key_placement(result)
    return result


@dataclass(frozen=True)
class MistralConnection:
    """Everything a client needs to reach the API: built once per sync, shared by every request."""

    api_root: str  # e.g. https://api.mistral.ai/v1
    api_key: str
    model: str
    key_parameter: str | None  # the query parameter carrying the key, or None for a Bearer header

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "MistralConnection":
        normalized = normalize_config(config)
        placement = normalized["key_placement"]
        return cls(
            api_root=normalized["base_url"] + "/v1",
            api_key=normalized["api_key"],
            model=normalized["model"],
            key_parameter=placement.get("parameter_name") if placement["method"] == "query_parameter" else None,
        )

    def url(self, path: str) -> str:
        return f"{self.api_root}/{path.lstrip('/')}"

    def auth_headers(self) -> dict[str, str]:
        return {} if self.key_parameter else {"Authorization": f"Bearer {self.api_key}"}

    def auth_params(self) -> dict[str, str]:
        return {self.key_parameter: self.api_key} if self.key_parameter else {}

    def __repr__(self) -> str:  # the key must never reach a log line through a repr
        return f"MistralConnection(api_root={self.api_root!r}, model={self.model!r}, key_parameter={self.key_parameter!r})"
