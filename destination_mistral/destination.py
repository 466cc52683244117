"""destination-mistral: spec, check and write, over the modules that do the work."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from pathlib import Path
from typing import Any, Iterable, Mapping, MutableMapping

import orjson
import yaml

from airbyte_cdk.connector import BaseConnector
from airbyte_cdk.destinations import Destination
from airbyte_cdk.models import (
    AirbyteConnectionStatus,
    AirbyteMessage,
    AirbyteMessageSerializer,
    ConfiguredAirbyteCatalog,
    ConnectorSpecification,
    DestinationSyncMode,
    Status,
)
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from mistral_connection.errors import config_error, unknown_model_message
from mistral_connection.spec import connector_specification

from destination_mistral.config import ChatSettings, DestinationConfig, EmbeddingSettings, parse_config
from destination_mistral.input import InputParser, check_records, first_line as _first_line, read_configured_catalog

logger = logging.getLogger("airbyte")

DOCUMENTATION_URL = "https://docs.airbyte.com/integrations/destinations/mistral"
_DONE = object()


def _own_fields() -> Mapping[str, Any]:
    return yaml.safe_load((Path(__file__).parent / "spec_fields.yaml").read_text(encoding="utf-8"))


def with_delivery(enricher, delivery, client):
    """Online enrichers answer per request; batch and auto delivery wrap them, so the inputs,
    cache keys and parsed answers stay the same whichever way the requests travel."""
    if enricher is None or delivery.mode == "online":
        return enricher
    from destination_mistral.batch_api import AutoDeliveryEnricher, BatchApiEnricher

    batch = BatchApiEnricher(enricher, client, requests_per_job=delivery.requests_per_job,
                             poll_max_seconds=delivery.poll_max_seconds)
    return batch if delivery.mode == "batch" else AutoDeliveryEnricher(enricher, batch, delivery.auto_threshold)


def build_enrichers(config: DestinationConfig, plans, client) -> dict:
    from destination_mistral.chat import ChatEnricher
    from destination_mistral.embeddings import EmbeddingEnricher

    shared: dict[int, Any] = {}
    enrichers = {}
    for plan in plans:
        settings = config.enrichment_for(plan.name)
        # Streams with the same settings share one enricher, so their embedding inputs share batches.
        enricher = shared.get(id(settings))
        if enricher is None:
            if isinstance(settings, ChatSettings):
                enricher = ChatEnricher(settings, client)
            elif isinstance(settings, EmbeddingSettings):
                enricher = EmbeddingEnricher(settings, client)
            enricher = with_delivery(enricher, config.delivery, client)
            shared[id(settings)] = enricher
        enrichers[plan.key] = enricher
    return enrichers


class DestinationMistral(Destination):
    # `write` validates the config itself (parse_config), with messages that name the field to fix;
    # the generic spec validation would answer "-1 is less than the minimum of 0" without saying where.
    check_config_against_spec = False

    def run(self, args: list[str]) -> None:
        from airbyte_cdk.exception_handler import init_uncaught_exception_handler

        from destination_mistral.output import configure_logging, write_line

        init_uncaught_exception_handler(logger)
        configure_logging()
        parsed = self.parse_args(args)
        for message in self.run_cmd(parsed):
            write_line(orjson.dumps(AirbyteMessageSerializer.dump(message)).decode())

    def spec(self, logger: logging.Logger) -> ConnectorSpecification:
        return connector_specification(
            "Destination Mistral",
            _own_fields(),
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
            problem = asyncio.run(_check_api(settings))
        except AirbyteTracedException as error:
            return AirbyteConnectionStatus(status=Status.FAILED, message=error.message)
        if problem:
            return AirbyteConnectionStatus(status=Status.FAILED, message=problem)
        return AirbyteConnectionStatus(status=Status.SUCCEEDED)

    # ---- write ----------------------------------------------------------------------------------

    @staticmethod
    def read_config(config_path: str) -> MutableMapping[str, Any]:
        try:
            config = BaseConnector._read_json_file(config_path)
        except (OSError, ValueError) as error:
            raise config_error(f"The config file could not be read as JSON ({_first_line(error)}): pass a JSON object.") from None
        if not isinstance(config, MutableMapping):
            raise config_error(f"The config file holds a JSON {type(config).__name__}, not an object: pass a JSON object.")
        return config

    def _run_write(self, config: Mapping[str, Any], configured_catalog_path: str, input_stream) -> Iterable[AirbyteMessage]:
        catalog = read_configured_catalog(configured_catalog_path)
        logger.info("Begin writing to the destination...")
        yield from self.write(config=config, configured_catalog=catalog, input_messages=self._parse_input_stream(input_stream))
        logger.info("Writing complete.")

    def _parse_input_stream(self, input_stream) -> Iterable[AirbyteMessage]:
        # Lines are read as bytes: a byte that is not UTF-8 is then one record's problem (replaced and
        # reported), not an exception in the middle of the input.
        yield from InputParser().parse(getattr(input_stream, "buffer", input_stream))

    def write(self, config: Mapping[str, Any], configured_catalog: ConfiguredAirbyteCatalog,
              input_messages: Iterable[AirbyteMessage]) -> Iterable[AirbyteMessage]:
        settings = parse_config(config)
        from destination_mistral.schema import plan_stream

        plans = [plan_stream(stream, settings) for stream in configured_catalog.streams]
        keys = [plan.key for plan in plans]
        if len(set(keys)) != len(keys):
            twice = next(plan.label for plan in plans if keys.count(plan.key) > 1)
            raise config_error(f"The configured catalog lists stream {twice!r} twice: keep one entry per stream.")
        input_messages = check_records(input_messages, set(keys))
        known = {plan.name for plan in plans}
        for name in settings.overrides:
            if name not in known:
                logger.warning(f"`stream_overrides` names stream {name!r}, which is not in this sync's catalog.")
        outbox: queue.Queue = queue.Queue()
        worker = threading.Thread(target=_run_sync, args=(settings, plans, input_messages, outbox), name="destination-mistral", daemon=True)
        worker.start()
        while True:
            item = outbox.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                worker.join(timeout=5)
                raise item
            yield item
        worker.join()


def _run_sync(settings: DestinationConfig, plans, input_messages, outbox: queue.Queue) -> None:
    try:
        asyncio.run(_sync(settings, plans, input_messages, outbox))
    except BaseException as error:
        outbox.put(error)
    else:
        outbox.put(_DONE)


async def _sync(settings: DestinationConfig, plans, input_messages, outbox: queue.Queue) -> None:
    from destination_mistral.client import MistralClient
    from destination_mistral.pipeline import Pipeline
    from destination_mistral.sinks import open_sink

    loop = asyncio.get_running_loop()
    sink = await loop.run_in_executor(None, open_sink, settings.output, settings.cache_enabled)
    client = MistralClient(settings.connection, settings.limits)
    pipeline = None
    try:
        enrichers = build_enrichers(settings, plans, client)
        pipeline = Pipeline(
            plans, enrichers, sink, client, outbox.put,
            on_error=settings.on_error,
            max_buffer_bytes=settings.limits.max_buffer_bytes,
            cache_enabled=settings.cache_enabled,
            request_stats=client.stats,
        )
        await loop.run_in_executor(pipeline.db, sink.start, plans)
        pipeline.inbox = asyncio.Queue()
        pipeline.loop = loop
        reader = threading.Thread(target=pipeline.feed, args=(input_messages,), name="destination-mistral-reader", daemon=True)
        reader.start()
        await pipeline.run()
    finally:
        await client.close()
        executor = pipeline.db if pipeline is not None else None
        if executor is not None:
            await loop.run_in_executor(executor, sink.close)
            executor.shutdown(wait=True)
        else:
            sink.close()


async def _check_api(settings: DestinationConfig) -> str | None:
    """One sentence on what is wrong with the key or the models, or None."""
    from destination_mistral.client import ApiError, MistralClient

    limits = settings.limits
    client = MistralClient(settings.connection, type(limits)(max_concurrent_requests=2, max_retries=min(limits.max_retries, 2),
                                                              max_retry_seconds=30, timeout_seconds=min(limits.timeout_seconds, 30)))
    try:
        try:
            listing = await client.get("models")
        except ApiError as error:
            return f"The Mistral API could not list models ({error.message}): check `base_url`."
        cards = listing.get("data", []) if isinstance(listing, Mapping) else listing if isinstance(listing, list) else []
        by_name: dict[str, Mapping[str, Any]] = {}
        for card in cards:
            if not isinstance(card, Mapping) or not card.get("id"):
                continue
            by_name.setdefault(card["id"], card)
            for alias in card.get("aliases") or []:
                by_name.setdefault(alias, card)
        seen = set()
        for enrichment in settings.all_enrichments():
            if not isinstance(enrichment, (ChatSettings, EmbeddingSettings)):
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
            if isinstance(enrichment, EmbeddingSettings) and "embed" not in model.lower():
                # /v1/models has no embeddings capability flag: ask the endpoint itself, with one tiny input.
                try:
                    await client.post("embeddings", {"model": model, "input": ["check"]})
                except (ApiError, AirbyteTracedException) as error:
                    return f"Model {model!r} cannot produce embeddings ({error.message}): use an embedding model such as mistral-embed."
        return None
    finally:
        await client.close()
