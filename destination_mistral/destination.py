"""destination-mistral under the CDK's Destination interface: spec and check here, write through
sync/runner.py (which runs without the CDK), with messages converted at this edge."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from airbyte_cdk.destinations import Destination
from airbyte_cdk.models import (
    AirbyteConnectionStatus,
    AirbyteMessage,
    AirbyteMessageSerializer,
    ConfiguredAirbyteCatalog,
    ConfiguredAirbyteCatalogSerializer,
    ConnectorSpecification,
    DestinationSyncMode,
    Status,
)
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_mistral.protocol.catalog import catalog_from_json
from destination_mistral.protocol.files import read_config
from destination_mistral.protocol.input_lines import parse_message_objects
from destination_mistral.protocol.messages import Record, State, StreamStatus
from destination_mistral.settings import (
    ChatSettings,
    DestinationConfig,
    EmbeddingSettings,
    NoEnrichment,
    own_fields,
    parse_config,
)
from destination_mistral.sync.runner import write_messages, write_stream
from mistral_connection.errors import unknown_model_message
from mistral_connection.spec import connector_specification

logger = logging.getLogger("airbyte")

DOCUMENTATION_URL = "https://docs.airbyte.com/integrations/destinations/mistral"


def from_airbyte(messages: Iterable[AirbyteMessage]) -> Iterable[Record | State | StreamStatus]:
    """The CDK's message objects as the write path holds them, read by the same parser as stdin so
    that both entry points accept, repair and refuse exactly the same messages."""
    return parse_message_objects(AirbyteMessageSerializer.dump(message) for message in messages)


def to_airbyte(message: Mapping[str, Any]) -> AirbyteMessage:
    return AirbyteMessageSerializer.load(message)


class DestinationMistral(Destination):
    # `check` and `write` validate the config with settings.parse_config, against the same spec
    # fields, with messages that name the field to fix; the CDK's generic validation would answer
    # with jsonschema's dump of the config, without saying where, and refuse what `write` accepts.
    check_config_against_spec = False

    def run(self, args: list[str]) -> None:
        if args and args[0] == "write":
            from destination_mistral.sync.runner import run_write_command

            run_write_command(args[1:])
            return
        from airbyte_cdk.exception_handler import init_uncaught_exception_handler

        from destination_mistral.protocol.logs import configure_logging
        from destination_mistral.protocol.stdout import write_message

        init_uncaught_exception_handler(logger)
        configure_logging()
        parsed = self.parse_args(args)
        for message in self.run_cmd(parsed):
            write_message(AirbyteMessageSerializer.dump(message))

    def run_cmd(self, parsed_args) -> Iterable[AirbyteMessage]:
        if parsed_args.command != "check":
            yield from super().run_cmd(parsed_args)
            return
        # The CDK validates the config against the spec before `check` whatever the flag above says.
        from airbyte_cdk.utils.airbyte_secrets_utils import get_secrets, update_secrets

        config = self.read_config(config_path=parsed_args.config)
        update_secrets(get_secrets(self.spec(logger).connectionSpecification, config))
        yield self._run_check(config=config)

    def spec(self, logger: logging.Logger) -> ConnectorSpecification:
        return connector_specification(
            "Destination Mistral",
            own_fields(),
            DOCUMENTATION_URL,
            supportsIncremental=True,
            supported_destination_sync_modes=[
                DestinationSyncMode.overwrite,
                DestinationSyncMode.append,
                DestinationSyncMode.append_dedup,
            ],
        )

    # ---- check ----------------------------------------------------------------------------------

    def check(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteConnectionStatus:
        try:
            settings = parse_config(config)
            from destination_mistral.sinks import check_writable

            check_writable(settings.output)
            if not _enriches(settings):
                # `write` sends nothing to the API then, so `check` does not require it either.
                return AirbyteConnectionStatus(
                    status=Status.SUCCEEDED,
                    message=(
                        "The config is valid and the output can be written. The Mistral API was not contacted: no "
                        "enrichment is set (mode none everywhere), so syncs do not use it."
                    ),
                )
            problem = asyncio.run(_check_api(settings))
        except AirbyteTracedException as error:
            return AirbyteConnectionStatus(status=Status.FAILED, message=error.message)
        if problem:
            return AirbyteConnectionStatus(status=Status.FAILED, message=problem)
        return AirbyteConnectionStatus(status=Status.SUCCEEDED)

    # ---- write ----------------------------------------------------------------------------------

    @staticmethod
    def read_config(config_path: str) -> MutableMapping[str, Any]:
        return read_config(config_path)

    def _run_write(
        self, config: Mapping[str, Any], configured_catalog_path: str, input_stream
    ) -> Iterable[AirbyteMessage]:
        for message in write_stream(config, configured_catalog_path, input_stream):
            yield to_airbyte(message)

    def write(
        self,
        config: Mapping[str, Any],
        configured_catalog: ConfiguredAirbyteCatalog,
        input_messages: Iterable[AirbyteMessage],
    ) -> Iterable[AirbyteMessage]:
        catalog = catalog_from_json(ConfiguredAirbyteCatalogSerializer.dump(configured_catalog), "passed in")
        for message in write_messages(config, catalog, from_airbyte(input_messages)):
            yield to_airbyte(message)


def _enriches(settings: DestinationConfig) -> bool:
    return any(not isinstance(item, NoEnrichment) for item in settings.all_enrichments())


# What a check that refuses a mode's model suggests instead.
_MODEL_FOR = {
    "moderation": "choose a moderation model such as mistral-moderation-latest.",
    "classification": "choose a classifier model (fine-tuned with a classifier job; GET /v1/models lists it with the "
    "classification capability).",
    "ocr": "choose an OCR model such as mistral-ocr-latest.",
}


async def _check_api(settings: DestinationConfig) -> str | None:
    """One sentence on what is wrong with the key or the models, or None.

    Every enrichment's model is looked up, a stream override's too, whatever the catalog: `check`
    has no catalog, and a config is valid or not by itself. `write` validates every override the
    same way (parse_config: templates, bounds, fields), catalog or not; what it cannot do without
    a request is ask the account for a model, so an unknown model of an override for a stream the
    sync does not carry is only reported by `check` (and `write` warns that the override is unused),
    while one of a stream it carries is refused by the API's answer to its first request."""
    from destination_mistral.http.client import MistralClient
    from destination_mistral.http.errors import ApiError

    limits = settings.limits
    client = MistralClient(
        settings.connection,
        type(limits)(
            max_concurrent_requests=2,
            max_retries=min(limits.max_retries, 2),
            max_retry_seconds=30,
            timeout_seconds=min(limits.timeout_seconds, 30),
        ),
    )
    try:
        try:
            listing = await client.get("models")
        except ApiError as error:
            return f"The Mistral API could not list models ({error.message}): check `base_url`."
        except AirbyteTracedException as error:
            if getattr(error.failure_type, "value", None) != "transient_error":
                raise
            # The client words a service failure for a sync ("the sync stops..."): check only says
            # what failed and where to look.
            reason = (error.message or "").split(" The sync stops")[0].rstrip(".")
            return f"{reason}. Check `base_url` and that the API is reachable from here."
        cards = (
            listing.get("data", []) if isinstance(listing, Mapping) else listing if isinstance(listing, list) else []
        )
        by_name: dict[str, Mapping[str, Any]] = {}
        for card in cards:
            if not isinstance(card, Mapping) or not card.get("id"):
                continue
            by_name.setdefault(card["id"], card)
            for alias in card.get("aliases") or []:
                by_name.setdefault(alias, card)
        seen = set()
        for enrichment in settings.all_enrichments():
            if isinstance(enrichment, NoEnrichment):
                continue
            model = enrichment.model
            if (model, enrichment.mode) in seen:
                continue
            seen.add((model, enrichment.mode))
            card = by_name.get(model)
            if card is None:
                return unknown_model_message(model, by_name)
            capabilities = card.get("capabilities") or {}
            if isinstance(enrichment, ChatSettings) and not capabilities.get("completion_chat"):
                return (
                    f"Model {model!r} cannot do chat completions (it has no completion_chat capability): choose a chat "
                    "model such as mistral-small-latest, or use the embeddings mode for an embedding model."
                )
            need = getattr(enrichment, "capability", None)  # moderation, classification, ocr
            if need and not capabilities.get(need):
                return (
                    f"Model {model!r} cannot do {enrichment.mode} (it has no {need} capability): "
                    f"{_MODEL_FOR[enrichment.mode]}"
                )
            if isinstance(enrichment, EmbeddingSettings) and "embed" not in model.lower():
                # /v1/models has no embeddings capability flag: ask the endpoint itself, with one tiny input.
                try:
                    await client.post("embeddings", {"model": model, "input": ["check"]})
                except (ApiError, AirbyteTracedException) as error:
                    return (
                        f"Model {model!r} cannot produce embeddings ({error.message}): "
                        "use an embedding model such as mistral-embed."
                    )
        return None
    finally:
        await client.close()
