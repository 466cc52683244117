"""`destination-mistral write`: config and catalog in, stdin messages through the pipeline, STATE out.

This module and everything it imports run without the Airbyte CDK (see destination_mistral.protocol
for why): the CDK is loaded only to format a failure as a TRACE message, when a second of start-up
no longer matters."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import queue
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from destination_mistral.protocol.describe import first_line
from destination_mistral.protocol.files import read_config, read_configured_catalog
from destination_mistral.protocol.input_lines import InputParser, check_records
from destination_mistral.protocol.messages import Record, State
from destination_mistral.settings import (
    ChatSettings,
    ClassificationSettings,
    Delivery,
    DestinationConfig,
    EmbeddingSettings,
    ModerationSettings,
    OcrSettings,
    check_stream_fields,
    parse_config,
)
from mistral_connection.errors import config_error

if TYPE_CHECKING:  # the client and the enrichers are imported when a sync starts, not with this module
    from destination_mistral.enrich.base import Enricher, Input
    from destination_mistral.http.client import MistralClient
    from destination_mistral.sinks.schema import StreamPlan
    from destination_mistral.sync.streams import StreamKey

logger = logging.getLogger("airbyte")

_DONE = object()


def with_delivery(
    enricher: Enricher[Input] | None, delivery: Delivery, client: MistralClient
) -> Enricher[Input] | None:
    """Online enrichers answer per request; batch and auto delivery wrap them, so the inputs,
    cache keys and parsed answers stay the same whichever way the requests travel."""
    if enricher is None or delivery.mode == "online":
        return enricher
    from destination_mistral.enrich.batch_api import AutoDeliveryEnricher, BatchApiEnricher

    batch = BatchApiEnricher(
        enricher, client, requests_per_job=delivery.requests_per_job, poll_max_seconds=delivery.poll_max_seconds
    )
    return batch if delivery.mode == "batch" else AutoDeliveryEnricher(enricher, batch, delivery.auto_threshold)


def build_enrichers(
    config: DestinationConfig,
    plans: list[StreamPlan],
    client: MistralClient,
    contexts: Mapping[str, int] | None = None,
) -> dict[StreamKey, Enricher[Input] | None]:
    """One enricher per distinct enrichment settings; `contexts`: chat models' context sizes as the
    API lists them (model_contexts)."""
    from destination_mistral.enrich.chat import ChatEnricher
    from destination_mistral.enrich.classification import ClassificationEnricher
    from destination_mistral.enrich.embeddings import EmbeddingEnricher
    from destination_mistral.enrich.moderation import ModerationEnricher
    from destination_mistral.enrich.ocr import OcrEnricher

    by_settings = {
        ChatSettings: ChatEnricher,
        EmbeddingSettings: EmbeddingEnricher,
        ModerationSettings: ModerationEnricher,
        ClassificationSettings: ClassificationEnricher,
        OcrSettings: OcrEnricher,
    }
    shared: dict[int, Enricher[Input] | None] = {}
    enrichers: dict[StreamKey, Enricher[Input] | None] = {}
    for plan in plans:
        settings = config.enrichment_for(plan.name)
        # Streams with the same settings share one enricher, so their batched inputs share batches.
        enricher = shared.get(id(settings))
        if enricher is None:
            key = id(settings)
            if isinstance(settings, ChatSettings) and contexts and settings.model in contexts:
                settings = replace(settings, context_length=contexts[settings.model])
            if isinstance(settings, ChatSettings):
                check_answer_room(settings, plan.label)
            make = by_settings.get(type(settings))
            online = make(settings, client) if make is not None else None
            enricher = with_delivery(online, config.delivery, client)
            if isinstance(settings, EmbeddingSettings) and settings.chunking is not None:
                from destination_mistral.enrich.batch_api import AutoDeliveryEnricher
                from destination_mistral.enrich.chunked_embeddings import ChunkedEmbeddingEnricher

                # The chunks travel as the embeddings of any text do, by the configured delivery.
                admit = enricher.admit if isinstance(enricher, AutoDeliveryEnricher) else (lambda item: item)
                enricher = ChunkedEmbeddingEnricher(settings, online, enricher, admit)
            shared[key] = enricher
        enrichers[plan.key] = enricher
    return enrichers


def check_answer_room(settings: ChatSettings, stream: str) -> None:
    """A `max_tokens` that leaves no room for a prompt in the model's context is the user's to fix:
    each request would be refused (the prompt cut to nothing, and still too long)."""
    if settings.prompt_room < 1:
        most = settings.effective_max_tokens + settings.prompt_room - 1
        raise config_error(
            f"The chat `max_tokens` ({settings.effective_max_tokens}) of stream {stream!r} leaves no room for a prompt "
            f"in the context of model {settings.model!r} ({settings.context_tokens} tokens): set it to at most {most}."
        )


def write_messages(config: Mapping[str, Any], catalog, messages: Iterable[Record | State]) -> Iterator[dict]:
    """Runs one sync; yields each STATE message (as JSON objects) once everything before it is committed."""
    settings = parse_config(config)
    from destination_mistral.sinks.plans import plan_stream

    plans = [plan_stream(stream, settings) for stream in catalog.streams]
    check_stream_fields(settings, catalog.streams)
    keys = [plan.key for plan in plans]
    if len(set(keys)) != len(keys):
        twice = next(plan.label for plan in plans if keys.count(plan.key) > 1)
        raise config_error(f"The configured catalog lists stream {twice!r} twice: keep one entry per stream.")
    messages = check_records(messages, set(keys))
    load_tokenizers_early(settings, plans)
    known = {plan.name for plan in plans}
    for name in settings.overrides:
        if name not in known:
            logger.warning(f"`stream_overrides` names stream {name!r}, which is not in this sync's catalog.")
    outbox: queue.Queue = queue.Queue()
    worker = threading.Thread(
        target=_run_sync, args=(settings, plans, messages, outbox), name="destination-mistral", daemon=True
    )
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


def load_tokenizers_early(settings: DestinationConfig, plans) -> None:
    """Starts loading the tokenizers the sync counts with beside opening the output and reading the
    first records, instead of after them: the first request waits for its count, and the newer
    models' tokenizer takes one to two seconds to load."""
    models = {
        enrichment.model
        for enrichment in (settings.enrichment_for(plan.name) for plan in plans)
        if isinstance(enrichment, (ChatSettings, EmbeddingSettings))
    }
    if not models or settings.cache_enabled:
        # With the cache on, every input may be answered from it, and a sync answered wholly by
        # the cache never loads a tokenizer: it is loaded when the first input needs counting.
        return
    from destination_mistral.enrich.tokens import tokenizer_for

    def load() -> None:
        for model in sorted(models):
            try:
                tokenizer_for(model)
            except Exception:  # noqa: BLE001 - the sync's own call meets the same error and reports it
                return

    threading.Thread(target=load, name="destination-mistral-tokenizer", daemon=True).start()


def _run_sync(settings: DestinationConfig, plans, messages, outbox: queue.Queue) -> None:
    try:
        asyncio.run(_sync(settings, plans, messages, outbox))
    except BaseException as error:
        outbox.put(error)
    else:
        outbox.put(_DONE)


async def _sync(settings: DestinationConfig, plans, messages, outbox: queue.Queue) -> None:
    from destination_mistral.http.client import MistralClient
    from destination_mistral.sinks import open_sink
    from destination_mistral.sync.model_contexts import model_contexts
    from destination_mistral.sync.pipeline import Pipeline

    loop = asyncio.get_running_loop()
    sink = await loop.run_in_executor(None, open_sink, settings.output, settings.cache_enabled)
    client = MistralClient(settings.connection, settings.limits)
    pipeline = None
    try:
        chat_models = [
            e.model for e in map(settings.enrichment_for, (p.name for p in plans)) if isinstance(e, ChatSettings)
        ]
        enrichers = build_enrichers(settings, plans, client, await model_contexts(chat_models, client))
        pipeline = Pipeline(
            plans,
            enrichers,
            sink,
            client,
            outbox.put,
            on_error=settings.on_error,
            max_buffer_bytes=settings.limits.max_buffer_bytes,
            cache_enabled=settings.cache_enabled,
        )
        await loop.run_in_executor(pipeline.db, sink.start, plans)
        reader = threading.Thread(
            target=pipeline.feed, args=(messages,), name="destination-mistral-reader", daemon=True
        )
        reader.start()
        await pipeline.run()
    finally:
        await client.close()
        executor = pipeline.db if pipeline is not None else None
        try:
            if executor is not None:
                await loop.run_in_executor(executor, sink.close)
            else:
                sink.close()
        except Exception as error:  # noqa: BLE001
            # Everything a STATE covers was committed before it left; a close that fails (a full
            # disk refusing the final checkpoint) must not hide the error that ended the sync.
            logger.warning(f"Closing the output failed ({first_line(error)}); committed data is not affected.")
        if executor is not None:
            executor.shutdown(wait=True)


def install_exception_hook() -> None:
    """Any exception that ends `write` becomes a TRACE message with its failure type, as under the
    CDK's entry point; the CDK that formats it is loaded only then."""

    def hook(exc_type, exc, tb) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        from airbyte_cdk.exception_handler import init_uncaught_exception_handler
        from airbyte_cdk.utils.airbyte_secrets_utils import update_secrets

        from destination_mistral.protocol.masking import registered_secrets

        update_secrets(registered_secrets())
        init_uncaught_exception_handler(logger)
        sys.excepthook(exc_type, exc, tb)

    sys.excepthook = hook


def tune_garbage_collector() -> None:
    """A sync allocates a few objects per record (futures, dicts, result rows) and keeps thousands
    alive in its window; at the default threshold (700 allocations) the cycle collector runs every
    few records and walks them all, a measured fifth of the process's CPU at 5,000 records/s.
    Collections stay on (asyncio makes reference cycles) but run 100x less often, and what was
    loaded at start-up is left out of them."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(70_000, 20, 20)


def parse_write_args(args: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="destination-mistral write", description="Write records from stdin.")
    parser.add_argument("--config", type=str, required=True, help="path to the JSON configuration file")
    parser.add_argument("--catalog", type=str, required=True, help="path to the configured catalog JSON file")
    return parser.parse_args(args)


def write_stream(config: Mapping[str, Any], catalog_path: str, stream) -> Iterator[dict]:
    """A sync over the Airbyte messages in `stream`, read as bytes: a byte that is not UTF-8 is then
    one record's problem (replaced and reported), not an exception in the middle of the input."""
    catalog = read_configured_catalog(catalog_path)
    logger.info("Begin writing to the destination...")
    yield from write_messages(config, catalog, InputParser().parse(getattr(stream, "buffer", stream)))
    logger.info("Writing complete.")


def prepare_process() -> None:
    """What a process that writes (`write`, `load`) sets up first: no BLAS threads, LOG lines on
    stdout, any failure as a TRACE message, a garbage collector tuned for many small objects."""
    # numpy's OpenBLAS starts a spinning thread per core that a sync never uses (it does no linear
    # algebra) and that takes CPU from it; numpy is not imported yet on this path.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from destination_mistral.protocol.logs import configure_logging

    install_exception_hook()
    configure_logging()
    tune_garbage_collector()


def run_write_command(args: list[str], stdin=None) -> None:
    """`write --config C --catalog K`, reading Airbyte messages from stdin."""
    from destination_mistral.protocol.masking import register_secrets
    from destination_mistral.protocol.stdout import write_message
    from destination_mistral.settings.key_masking import config_secrets

    prepare_process()
    parsed = parse_write_args(args)
    config = read_config(parsed.config)
    register_secrets(config_secrets(config))
    for message in write_stream(config, parsed.catalog, stdin if stdin is not None else sys.stdin):
        write_message(message)
