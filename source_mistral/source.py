"""source-mistral: the declarative manifest does the reading; this class adds what a manifest
cannot express: the spec built from the shared spec.yaml, config normalisation (every base-URL form,
key placement, the plain-http refusal) and a check that the configured model exists."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml
from airbyte_cdk.models import (
    AirbyteConnectionStatus,
    AirbyteErrorTraceMessage,
    AirbyteMessage,
    AirbyteStateMessage,
    AirbyteStreamStatus,
    ConfiguredAirbyteCatalog,
    ConnectorSpecification,
    FailureType,
    Status,
    Type,
)
from airbyte_cdk.sources.declarative.yaml_declarative_source import YamlDeclarativeSource
from airbyte_cdk.utils.airbyte_secrets_utils import filter_secrets
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from mistral_connection import normalize_config, register_secret_forms
from mistral_connection.errors import unknown_model_message
from mistral_connection.spec import connector_specification
from source_mistral.components import SKIPPED_ROUTES, SkippedRoute
from source_mistral.config_checks import check_own_fields
from source_mistral.estimates import announced_requests_per_second, estimate_messages

DOCUMENTATION_URL = "https://docs.airbyte.com/integrations/sources/mistral"


@lru_cache(maxsize=1)
def own_fields() -> Mapping[str, Any]:
    return yaml.safe_load(resources.files("source_mistral").joinpath("spec_fields.yaml").read_text(encoding="utf-8"))


def source_specification() -> ConnectorSpecification:
    return connector_specification("Mistral Source Spec", own_fields(), DOCUMENTATION_URL)


class SourceMistral(YamlDeclarativeSource):
    def __init__(
        self,
        catalog: ConfiguredAirbyteCatalog | None = None,
        config: Mapping[str, Any] | None = None,
        state: list[AirbyteStateMessage] | None = None,
    ) -> None:
        if config:
            config = checked_config(config)
            _mask_key(config)
        super().__init__(path_to_yaml="manifest.yaml", catalog=catalog, config=config, state=state)

    def spec(self, logger: logging.Logger) -> ConnectorSpecification:
        return source_specification()

    def check(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteConnectionStatus:
        """Lists the account's models through the manifest's own requester (so auth, retries and
        the invalid-key message are the sync's), then verifies that the configured model is there."""
        _mask_key(self._config)
        SKIPPED_ROUTES.clear()
        try:
            names = model_names(self._read_stream("models"))
        except AirbyteTracedException as error:
            return AirbyteConnectionStatus(status=Status.FAILED, message=error.message)
        skipped = SKIPPED_ROUTES.of("models")
        if skipped is not None:
            # A read skips a stream whose route is absent; check has nothing to check without models.
            return AirbyteConnectionStatus(status=Status.FAILED, message=absent_models_message(skipped))
        wanted = self._config["model"]
        if wanted not in names:
            return AirbyteConnectionStatus(status=Status.FAILED, message=unknown_model_message(wanted, names))
        return AirbyteConnectionStatus(status=Status.SUCCEEDED)

    def read(
        self,
        logger: logging.Logger,
        config: Mapping[str, Any],
        catalog: ConfiguredAirbyteCatalog,
        state: list[AirbyteStateMessage] | None = None,
    ) -> Iterator[AirbyteMessage]:
        _mask_key(self._config)
        SKIPPED_ROUTES.clear()
        seen_headers: list = []
        yield from estimate_messages(self._config, [s.stream.name for s in catalog.streams], seen_headers)
        self._pace_at_announced_limit(seen_headers)
        stream_failures: set[FailureType] = set()
        held = HeldStates(STATES_AT_COMPLETE)
        try:
            for message in held.messages(_skipped_incomplete(super().read(logger, config, catalog, state))):
                if message.type == Type.TRACE and message.trace.error is not None:
                    if message.trace.error.failure_type:
                        stream_failures.add(message.trace.error.failure_type)
                    _mask_trace(message.trace.error)
                yield message
        except AirbyteTracedException as error:
            # The CDK closes a sync with failed streams with a summary marked config_error, even when
            # every stream failed because the API was down. The summary keeps the streams' own type
            # so that the platform retries an outage instead of asking the user to fix the config.
            if error.failure_type == FailureType.config_error and stream_failures == {FailureType.transient_error}:
                error.failure_type = FailureType.transient_error
            raise

    def discover(self, logger: logging.Logger, config: Mapping[str, Any]):
        _mask_key(self._config)
        return super().discover(logger, config)

    def _pace_at_announced_limit(self, seen_headers: list) -> None:
        """Without `requests_per_second`, the manifest's call budget paces the read at the limit the
        API announced on the estimate answers (x-ratelimit-limit-req-minute), so a default sync reads
        at the account's pace instead of running into 429s. The budget is built from the config when
        the streams are (at the start of the read), which is why the value is set here and not in the
        manifest. Without such a header the budget follows x-ratelimit-remaining-req-minute alone."""
        if self._config.get("requests_per_second"):
            return
        paces = [pace for pace in map(announced_requests_per_second, seen_headers) if pace]
        if paces:
            self._config = {**self._config, "requests_per_second": min(paces)}
            logging.getLogger("airbyte").info(
                "Pacing requests at %s per second, the limit the Mistral API announced.", min(paces)
            )

    def _read_stream(self, name: str) -> Iterable[Mapping[str, Any]]:
        stream = next(s for s in self.streams(self._config) if s.name == name)
        for partition in stream.generate_partitions():
            for record in partition.read():
                yield record.data


# The streams whose STATE leaves only with their COMPLETE status. batch_job_results: its parents'
# positions must not pass a job whose files were not read, and the CDK's concurrent cursor moves them
# when a partition ends, even one that failed; so a read that fails part way releases no new state,
# and the next one reads again the files of every job finished since the previous state.
STATES_AT_COMPLETE = frozenset({"batch_job_results"})


class HeldStates:
    """Holds the STATEs of each of `streams` until the stream's COMPLETE status, then releases the
    latest (the CDK sends a stream's last STATE after its status; that one passes); a stream that
    fails or ends INCOMPLETE releases none."""

    def __init__(self, streams: frozenset[str]) -> None:
        self.streams = streams
        self.latest: dict[str, AirbyteMessage] = {}
        self.completed: set[str] = set()

    def messages(self, messages: Iterable[AirbyteMessage]) -> Iterator[AirbyteMessage]:
        for message in messages:
            if message.type == Type.STATE and message.state.stream is not None:
                name = message.state.stream.stream_descriptor.name
                if name in self.streams and name not in self.completed:
                    self.latest[name] = message
                    continue
            yield message
            if message.type == Type.TRACE and message.trace.stream_status is not None:
                status = message.trace.stream_status
                held = self.latest.pop(status.stream_descriptor.name, None)
                if status.status == AirbyteStreamStatus.COMPLETE:
                    self.completed.add(status.stream_descriptor.name)
                    if held is not None:
                        yield held


def _skipped_incomplete(messages: Iterable[AirbyteMessage]) -> Iterator[AirbyteMessage]:
    """A stream whose route the API did not serve ends INCOMPLETE, not COMPLETE: the sync goes on,
    but a destination that replaces a stream's data when it completes (overwrite, a refresh) must
    keep what it holds rather than replace it with an empty read (a proxy that stops serving
    agents for a while would otherwise empty the agents table)."""
    for message in messages:
        status = message.trace.stream_status if message.type == Type.TRACE else None
        if (
            status is not None
            and status.status == AirbyteStreamStatus.COMPLETE
            and SKIPPED_ROUTES.left_unread(status.stream_descriptor.name)
        ):
            status.status = AirbyteStreamStatus.INCOMPLETE
        yield message


def checked_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config validated (the source's own fields against the spec, the credentials by
    mistral_connection) and normalised, before the CDK builds anything from it."""
    check_own_fields(config, source_specification().connectionSpecification)
    return normalize_config(config)


def _mask_key(config: Mapping[str, Any] | None) -> None:
    """Masks the key in every form it can take in a log line: in query placement the request URL
    carries it %-encoded, which the CDK's filter of the plain key misses. Called again by each
    command because the CDK's entrypoint resets its list of secrets to the config's plain ones."""
    if config and isinstance(config.get("api_key"), str):
        register_secret_forms(config["api_key"])


def _mask_trace(error: AirbyteErrorTraceMessage) -> None:
    """The CDK emits a failed stream's trace without its secret filter (logs and the final summary
    go through it): the internal message holds the request URL, and in query placement the URL
    holds the key."""
    for field in ("message", "internal_message", "stack_trace"):
        text = getattr(error, field)
        if text:
            setattr(error, field, filter_secrets(text))


def absent_models_message(skipped: SkippedRoute) -> str:
    return (
        f"The API at `base_url` does not serve {skipped.route} (HTTP {skipped.status}), which lists the models "
        "this check verifies: set `base_url` to the Mistral API's address (e.g. https://api.mistral.ai) or to a "
        "proxy that serves the whole API."
    )


def model_names(cards: Iterable[Mapping[str, Any]]) -> set[str]:
    """Ids and aliases: a user may configure either."""
    names: set[str] = set()
    for card in cards:
        names.add(card["id"])
        names.update(card.get("aliases") or [])
    return names
