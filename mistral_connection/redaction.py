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


def mask_secret_in(raw: bytes, secret: str) -> bytes:
    """`raw` (a server's answer) with every form of `secret` replaced by ****, JSON-escaped forms
    (a `/` written `\\/`) included, and so is any run of a form's first characters that a server cut
    short when it quoted the request (e.g. a header too long for it, quoted to its first 8 KB). Done
    on the whole answer before anything shortens it, because a form that a later truncation cut short
    would be harder to tell from ordinary text."""
    forms = [form for form in secret_forms(secret) if form]
    forms += [form.replace("/", "\\/") for form in forms if "/" in form]
    ordered = sorted({form.encode("utf-8") for form in forms}, key=len, reverse=True)
    for form in ordered:
        raw = raw.replace(form, MASK_BYTES)
    for form in ordered:  # only once every whole form is masked: a cut one must not eat a whole one
        if len(form) > PREFIX_BYTES:
            raw = _mask_prefixes(raw, form)
    return raw


# A run of the key's first bytes this long is the key's, not a coincidence of ordinary text.
PREFIX_BYTES = 12
MASK_BYTES = b"****"


def _mask_prefixes(raw: bytes, form: bytes) -> bytes:
    start = raw.find(form[:PREFIX_BYTES])
    while start >= 0:
        end = start + PREFIX_BYTES
        while end < len(raw) and end - start < len(form) and raw[end] == form[end - start]:
            end += 1
        raw = raw[:start] + MASK_BYTES + raw[end:]
        start = raw.find(form[:PREFIX_BYTES], start + len(MASK_BYTES))
    return raw


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
