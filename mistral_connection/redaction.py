"""Every form in which a secret can reach a log line.

The CDK masks the config's secrets as they are written. A key sent as a query parameter also
appears URL-encoded (in the request URL the HTTP library logs when a request fails), and a key
holding `+`, `/` or `=` (common in base64-style keys) is then spelled differently from the key
itself, so masking the plain key alone lets the encoded one through."""

from __future__ import annotations

from urllib.parse import quote, quote_plus


def secret_forms(secret: str) -> list[str]:
    """The secret as typed, stripped, and as each URL encoder spells it: `quote` (keeps `/`),
    `quote_plus` (what `requests` uses for query strings: space as `+`), `quote(safe='')`, each
    also with lower-case %-escapes (some clients and proxies write them so). Longest first, so
    that a mask never leaves the tail of a longer form behind. Empty for an empty secret."""
    if not isinstance(secret, str) or not secret.strip():
        return []
    forms: set[str] = set()
    for text in {secret, secret.strip()}:
        for encoded in (text, quote(text), quote_plus(text), quote(text, safe=""), quote_plus(text, safe="")):
            forms.add(encoded)
            forms.add(_lower_escapes(encoded))
    return sorted(forms, key=lambda form: (-len(form), form))


def _lower_escapes(text: str) -> str:
    parts = text.split("%")
    return parts[0] + "".join(
        ("%" + part[:2].lower() + part[2:]) if len(part) >= 2 else "%" + part for part in parts[1:]
    )


def register_secret_forms(secret: str) -> None:
    """Adds every form of `secret` to the CDK's log filter. Idempotent, and safe to call again after
    the CDK's entrypoint has replaced its list with the config's plain secrets (it does on every
    command)."""
    from airbyte_cdk.utils.airbyte_secrets_utils import add_to_secrets, filter_secrets

    for form in secret_forms(secret):
        if filter_secrets(form) != "****":
            add_to_secrets(form)
