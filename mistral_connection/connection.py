"""The normalised credential block: one API root, one key, one place the key travels."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mistral_connection.errors import config_error
from mistral_connection.spec import credential_block
from mistral_connection.unknown_fields import unknown_field_problem

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


# `name:` followed by something other than a port number is a scheme (`javascript:alert(1)`,
# `file:/etc/passwd`, `mailto:x`); `localhost:8080` and `api.mistral.ai:443` are a host and a port.
_OTHER_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*):(?!\d)", re.IGNORECASE)
# A DNS name (labels of letters, digits, hyphens; underscores appear in container and internal names).
_HOST_NAME = re.compile(
    r"^(?=.{1,253}\.?$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$"
)
_USE = f"use a form such as {DEFAULT_BASE_URL}"


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    return {dict: "an object", list: "a list"}.get(type(value), "another type")


def _character_kind(char: str) -> str:
    if char in "\r\n":
        return "a line break"
    if char == "\t":
        return "a tab"
    if char.isspace():
        return "a space"
    if ord(char) < 32 or 127 <= ord(char) < 160:
        return f"a control character (U+{ord(char):04X})"
    return "a non-ASCII character"


def normalize_base_url(raw: Any) -> str:
    """Reduce any pasted form to the root under which `/v1/...` lives, e.g.
    `https://api.mistral.ai/v1/chat/completions/` -> `https://api.mistral.ai`, keeping a proxy's
    path prefix (`https://proxy.example.com/mistral/v1` -> `https://proxy.example.com/mistral`).
    Anything else is a config error naming the part to fix. The URL itself is not echoed whole: a
    key pasted into it by mistake would otherwise reach the logs."""
    if raw is not None and not isinstance(raw, str):
        raise config_error(f"`base_url` must be text, not {_json_type(raw)}: {_USE}.")
    text = (raw or DEFAULT_BASE_URL).strip()
    for char in text:
        if char.isspace() or ord(char) < 32 or ord(char) == 127:
            # urlsplit silently drops line breaks and tabs and keeps spaces in the host: both would
            # send the key somewhere other than what the form shows.
            raise config_error(f"`base_url` contains {_character_kind(char)}: remove it ({_USE}).")
    other = _OTHER_SCHEME.match(text)
    if other and "://" not in text[: other.end() + 2]:
        raise config_error(
            f"`base_url` uses the {other.group(1).lower()}: scheme; the API is reached over https: {_USE}."
        )
    if "://" not in text:
        text = "https://" + text
    try:
        parts = urlsplit(text)
    except ValueError:  # an unbalanced IPv6 bracket
        raise config_error(f"`base_url` has a malformed host (check the [ ] around an IPv6 address): {_USE}.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise config_error(f"`base_url` uses the {scheme or 'empty'}:// scheme, so it is not an http(s) URL: {_USE}.")
    if "@" in parts.netloc:
        raise config_error("`base_url` must not carry credentials: put the key in `api_key`.")
    if parts.query or parts.fragment:
        raise config_error(
            "`base_url` must not carry a query string or fragment: put the key in `api_key` and, for a proxy "
            "that reads it from the query, choose `key_placement` = query parameter."
        )
    host = _checked_host(parts.hostname or "")
    port = _checked_port(parts)
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
    netloc = host if port is None else f"{host}:{port}"
    if ":" in host:  # an IPv6 literal keeps its brackets
        netloc = f"[{host}]" if port is None else f"[{host}]:{port}"
    return urlunsplit((scheme, netloc, path, "", ""))


def _checked_host(raw_host: str) -> str:
    host = raw_host.lower()
    if not host:
        raise config_error(f"`base_url` has no host name: {_USE}.")
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if not host.isascii():
        # An internationalised name goes on the wire in its ASCII (punycode) form.
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise config_error(
                f"`base_url` has a host name that is not a valid internationalised domain name: {_USE}."
            ) from None
    if not _HOST_NAME.match(host):
        raise config_error(
            f"`base_url` has a host name with characters a host name cannot hold (letters, digits, "
            f"hyphens and dots only): {_USE}."
        )
    return host


def _checked_port(parts) -> int | None:
    try:
        port = parts.port
    except ValueError:
        # urlsplit's own message; the text after the last ':' of the host part is what was typed.
        typed = parts.netloc.rsplit(":", 1)[-1]
        if typed.isdigit():
            raise config_error(
                f"`base_url` has port {int(typed)}, which is not a valid port (1–65535): "
                f"fix the number or leave it out for the scheme's default."
            ) from None
        raise config_error(
            "`base_url` has a port that is not a number: write it as host:port, e.g. "
            "proxy.example.com:8443, or leave it out for the scheme's default."
        ) from None
    if port == 0:
        raise config_error(
            "`base_url` has port 0, which is not a valid port (1–65535): "
            "fix the number or leave it out for the scheme's default."
        )
    return port


# What spec.yaml's pattern allows for the parameter name: URL-safe without escaping.
_PARAMETER_NAME = re.compile(r"^[A-Za-z0-9_.~-]+$")


def _key_placement(config: Mapping[str, Any]) -> dict[str, str]:
    placement = config.get("key_placement") or BEARER
    if not isinstance(placement, Mapping):
        raise config_error('`key_placement` must be an object such as {"method": "bearer_header"}.')
    method = placement.get("method", "bearer_header")
    if placement is not BEARER and method in ("bearer_header", "query_parameter"):
        # A misspelt or misplaced field (`metod`, a parameter name beside the Bearer header) would
        # otherwise be ignored, and the key sent where the user did not ask.
        form = {"key_placement": credential_block()["properties"]["key_placement"]}
        problem = unknown_field_problem({"key_placement": {"method": method, **placement}}, form)
        if problem:
            raise config_error(problem)
    if method == "bearer_header":
        return dict(BEARER)
    if method == "query_parameter":
        name = placement.get("parameter_name")
        name = "api_token" if name is None else name
        if not isinstance(name, str):
            raise config_error(
                "`key_placement.parameter_name` must be text: the query parameter's name, e.g. api_token."
            )
        name = name.strip()
        if not name:
            raise config_error("`key_placement.parameter_name` is empty: name the query parameter, e.g. api_token.")
        if not _PARAMETER_NAME.match(name):
            raise config_error(
                "`key_placement.parameter_name` may hold only letters, digits and _ . ~ -: "
                "use the proxy's parameter name, e.g. api_token."
            )
        return {"method": "query_parameter", "parameter_name": name}
    raise config_error(f"`key_placement.method` {method!r} is unknown: use bearer_header or query_parameter.")


def normalize_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as the connectors use it: defaults filled in, base URL reduced to its root.
    Raises a config error naming the field for anything a user must fix."""
    result = dict(config)
    result["api_key"] = _checked_key(result.get("api_key"))
    model = result.get("model") or DEFAULT_MODEL
    if not isinstance(model, str) or not model.strip():
        raise config_error("`model` must be a model id such as mistral-small-latest.")
    result["model"] = model.strip()
    if isinstance(result.get("base_url"), str) and not result["base_url"].strip():
        # An empty field is not the default: it is a URL left blank, which no request can reach.
        raise config_error(f"`base_url` is empty: {_USE}, or leave the field out for the default.")
    result["base_url"] = normalize_base_url(result.get("base_url"))
    result["key_placement"] = _key_placement(result)
    return result


_KEY_SOURCE = "paste the key again from https://console.mistral.ai/api-keys"
LONGEST_KEY = 1024


def _checked_key(key: Any) -> str:
    """The key as it can travel in an HTTP header (or query string): ASCII without control
    characters. A CR/LF would split the header, other characters make the HTTP library raise in the
    middle of the sync. The message says what kind of character, never which or where: the key is
    secret even when broken."""
    if key is None or (isinstance(key, str) and not key.strip()):
        raise config_error(f"`api_key` is missing or blank: {_KEY_SOURCE}.")
    if not isinstance(key, str):
        raise config_error(f"`api_key` must be text, not {_json_type(key)}: {_KEY_SOURCE}.")
    key = key.strip()
    if len(key) > LONGEST_KEY:
        # Servers refuse a request header past about 8 KB with an answer that looks like the API's
        # refusal of each request; a key this long is something else pasted with it.
        raise config_error(
            f"`api_key` is {len(key)} characters long, more than the {LONGEST_KEY} a key can be (Mistral's "
            f"are 32): {_KEY_SOURCE}, and only the key."
        )
    for char in key:
        if ord(char) < 32 or 127 <= ord(char) < 160:
            raise config_error(
                f"`api_key` contains {_character_kind(char)}, which an HTTP header cannot carry: "
                f"{_KEY_SOURCE}, without line breaks or other invisible characters."
            )
        if not char.isascii():
            raise config_error(
                f"`api_key` contains {_character_kind(char)} (such as an accented letter or a typographic "
                f"quote), which an HTTP header cannot carry: {_KEY_SOURCE}."
            )
    return key


@dataclass(frozen=True)
class MistralConnection:
    """Everything a client needs to reach the API: built once per sync, shared by every request."""

    api_root: str  # e.g. https://api.mistral.ai/v1
    api_key: str
    model: str
    key_parameter: str | None  # the query parameter carrying the key, or None for a Bearer header

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MistralConnection:
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
        return (
            f"MistralConnection(api_root={self.api_root!r}, model={self.model!r}, key_parameter={self.key_parameter!r})"
        )
