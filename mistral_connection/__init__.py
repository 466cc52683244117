"""What source-mistral and destination-mistral share: the credential spec, base-URL
normalisation, where the key travels, and how API failures become Airbyte errors."""

from mistral_connection.connection import MistralConnection, normalize_config
from mistral_connection.errors import config_error, nearest_model_names
from mistral_connection.redaction import mask_secret_in, register_secret_forms, secret_forms

__all__ = [
    "mask_secret_in",
    "MistralConnection",
    "normalize_config",
    "config_error",
    "nearest_model_names",
    "register_secret_forms",
    "secret_forms",
]
