"""The `source-mistral` console script."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import orjson
from airbyte_cdk.entrypoint import AirbyteEntrypoint, launch
from airbyte_cdk.models import (
    AirbyteErrorTraceMessage,
    AirbyteMessage,
    AirbyteTraceMessage,
    FailureType,
    TraceType,
    Type,
)
from airbyte_cdk.models.airbyte_protocol_serializers import AirbyteMessageSerializer
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_mistral.source import SourceMistral


def _trace(error: AirbyteTracedException) -> str:
    message = AirbyteMessage(
        type=Type.TRACE,
        trace=AirbyteTraceMessage(
            type=TraceType.ERROR,
            emitted_at=datetime.now(UTC).timestamp() * 1000,
            error=AirbyteErrorTraceMessage(
                message=error.message or "source-mistral failed",
                internal_message=error.internal_message,
                failure_type=error.failure_type or FailureType.system_error,
            ),
        ),
    )
    return orjson.dumps(AirbyteMessageSerializer.dump(message)).decode()


def create_source(args: list[str]) -> SourceMistral:
    """The source is built with its config and state up front (the concurrent CDK wants them at
    construction); a config error found there must still reach the platform as a trace."""
    catalog_path = AirbyteEntrypoint.extract_catalog(args)
    config_path = AirbyteEntrypoint.extract_config(args)
    state_path = AirbyteEntrypoint.extract_state(args)
    catalog = SourceMistral.read_catalog(catalog_path) if catalog_path else None
    config = SourceMistral.read_config(config_path) if config_path else None
    state = SourceMistral.read_state(state_path) if state_path else None
    return SourceMistral(catalog=catalog, config=config, state=state)


def run(args: list[str] | None = None) -> None:
    args = sys.argv[1:] if args is None else args
    try:
        source = create_source(args)
    except AirbyteTracedException as error:
        print(_trace(error), flush=True)
        if args and args[0] == "check" and error.failure_type == FailureType.config_error:
            # `check` answers a user mistake with a failed connection status, as the CDK does.
            status = error.as_connection_status_message()
            print(orjson.dumps(AirbyteMessageSerializer.dump(status)).decode(), flush=True)
            return
        sys.exit(1)
    launch(source, args)


if __name__ == "__main__":
    run()
