"""Row estimates for the progress bar of the platform: /v1/files, /v1/batch/jobs and
/v1/fine_tuning/jobs report a `total`. The manifest has no way to emit estimate traces, so one
one-record request per stream asks for it before the sync starts."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import requests
from airbyte_cdk.models import (
    AirbyteEstimateTraceMessage,
    AirbyteMessage,
    AirbyteTraceMessage,
    EstimateType,
    TraceType,
    Type,
)

from mistral_connection import MistralConnection

# stream name -> list endpoint that answers with `total`
TOTAL_ENDPOINTS = {"files": "files", "batch_jobs": "batch/jobs", "fine_tuning_jobs": "fine_tuning/jobs"}

logger = logging.getLogger("airbyte")


# Mistral announces the workspace's request limit on every answer, per minute.
LIMIT_HEADER = "x-ratelimit-limit-req-minute"


def announced_requests_per_second(headers: Mapping[str, str]) -> int | None:
    """The pace the API grants, from its limit header: whole requests per second, at least 1 (the
    manifest's call budget counts whole requests in a one-second window)."""
    try:
        per_minute = int(headers.get(LIMIT_HEADER, ""))
    except ValueError:
        return None
    return max(1, per_minute // 60) if per_minute > 0 else None


def _total(session: requests.Session, connection: MistralConnection, path: str, seen_headers: list) -> int | None:
    response = session.get(
        connection.url(path),
        params={"page": 0, "page_size": 1, **connection.auth_params()},
        headers=connection.auth_headers(),
        timeout=30,
        allow_redirects=False,
    )
    seen_headers.append(response.headers)
    if response.status_code != 200:
        return None
    total = response.json().get("total")
    return total if isinstance(total, int) else None


class Pace:
    """At most `per_second` requests in any one-second window, for the estimate requests that go out
    before the manifest's call budget exists. `settle()` waits until the last of them is a second
    old, so that the budget, which knows nothing of them, can spend its whole first second without
    the two together going over the cap."""

    def __init__(self, per_second: int | None) -> None:
        self.per_second = per_second
        self.sent: list[float] = []

    def wait_for_slot(self) -> None:
        if self.per_second:
            window = [t for t in self.sent if time.monotonic() - t < 1.0]
            if len(window) >= self.per_second:
                time.sleep(max(0.0, window[-self.per_second] + 1.0 - time.monotonic()))
        self.sent.append(time.monotonic())

    def settle(self) -> None:
        if self.per_second and self.sent:
            time.sleep(max(0.0, self.sent[-1] + 1.0 - time.monotonic()))


def estimate_messages(
    config: Mapping[str, Any], stream_names: Iterable[str], seen_headers: list | None = None
) -> Iterator[AirbyteMessage]:
    """An estimate is a courtesy: any failure here is left to the sync itself to report. The headers
    of the answers are appended to `seen_headers`, so the sync can learn the API's rate limit."""
    seen_headers = [] if seen_headers is None else seen_headers
    connection = MistralConnection.from_config(config)
    pace = Pace(config.get("requests_per_second"))
    with requests.Session() as session:
        for name in stream_names:
            path = TOTAL_ENDPOINTS.get(name)
            if path is None:
                continue
            pace.wait_for_slot()
            try:
                total = _total(session, connection, path, seen_headers)
            except (requests.RequestException, ValueError):
                total = None
            if total is None:
                logger.debug("No row estimate for stream %s", name)
                continue
            yield AirbyteMessage(
                type=Type.TRACE,
                trace=AirbyteTraceMessage(
                    type=TraceType.ESTIMATE,
                    emitted_at=time.time() * 1000,
                    estimate=AirbyteEstimateTraceMessage(name=name, type=EstimateType.STREAM, row_estimate=total),
                ),
            )
    # With a fixed cap, the streams' budget starts counting only after this.
    pace.settle()
