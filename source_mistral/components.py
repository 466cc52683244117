"""Rules the manifest cannot express: a page list that ends short of its announced `total`, a JSON
Lines file cut short, a 429 that is waited out for as long as the API serves anyone, a skipped route
that is named in a warning, and a refused redirect that becomes a config error (MistralErrorHandler).


/v1/files, /v1/batch/jobs and /v1/fine_tuning/jobs announce `total` on every page. The CDK's
PageIncrement stops at the first page shorter than page_size and reports the stream COMPLETE, whatever
the API announced; a stop condition in the manifest can only stop paging, not fail the stream. So this
strategy pages exactly as PageIncrement does and, when it stops, compares the records the pages
carried with the `total` of the last page: fewer means records were lost on the way (a proxy that cut
a page short, a server that answered a partial list), and the stream fails with a transient error
instead of being reported complete.

What the comparison counts: the records the API sent, before the client-side incremental filter
drops old ones (the CDK records that count on the response), and `total` as the API computes it for
the same query (batch jobs' server-side `created_after` filter narrows both alike). So a date filter
or an incremental state never looks like a loss. `total` is read from the last page, not the first,
so that an upload or a deletion during the read, which moves both the pages and the total, does not
look like one either."""

from __future__ import annotations

import io
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

import orjson
import requests
import urllib3
from airbyte_cdk.models import FailureType
from airbyte_cdk.sources.declarative.extractors.record_selector import extracted_record_count
from airbyte_cdk.sources.declarative.requesters.error_handlers.default_error_handler import DefaultErrorHandler
from airbyte_cdk.sources.declarative.requesters.paginators.strategies.page_increment import PageIncrement
from airbyte_cdk.sources.streams.http.error_handlers import BackoffStrategy
from airbyte_cdk.sources.streams.http.error_handlers.response_models import ErrorResolution, ResponseAction
from airbyte_cdk.sources.types import Record, StreamSlice
from airbyte_cdk.utils.datetime_helpers import ab_datetime_parse
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_mistral.redirects import RedirectRefused


def announced_total(response: requests.Response) -> int | None:
    try:
        body = response.json()
    except ValueError:
        return None
    total = body.get("total") if isinstance(body, dict) else None
    # bool is an int in Python; a boolean `total` is no count.
    return total if isinstance(total, int) and not isinstance(total, bool) else None


_logger = logging.getLogger("airbyte")


def last_listed(response: requests.Response, field: str) -> int | None:
    """`field` of the last item the page listed, before any filter: how far the list has come."""
    try:
        data = response.json().get("data")
    except (ValueError, AttributeError):
        return None
    value = data[-1].get(field) if isinstance(data, list) and data and isinstance(data[-1], dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def window_end(stream_slice: StreamSlice | None) -> float | None:
    """The end of the cursor's window this page was asked for, in Unix seconds."""
    end = stream_slice.cursor_slice.get("end_time") if stream_slice is not None else None
    return ab_datetime_parse(end).timestamp() if end not in (None, "") else None


@dataclass
class TotalCheckedPageIncrement(PageIncrement):
    # A list the API returns in ascending order of this field (batch jobs with order_by=created,
    # created_at), read one cursor window at a time: once a page ends past the window's end, the
    # window is complete, and the rest of the list belongs to later windows. Unset: page to the end.
    ascending_field: str | None = None

    def next_page_token(
        self,
        response: requests.Response,
        last_page_size: int,
        last_record: Record | None,
        last_page_token_value: Any | None,
        page_size_override: int | None = None,
        stream_slice: StreamSlice | None = None,
    ) -> Any | None:
        if self.ascending_field:
            end, last = window_end(stream_slice), last_listed(response, self.ascending_field)
            if end is not None and last is not None and last > end:
                # The pages stop here on purpose: `total` counts the rest of the list too, so the
                # check against it below applies only to a list paged to its end.
                return None
        token = super().next_page_token(
            response, last_page_size, last_record, last_page_token_value, page_size_override, stream_slice
        )
        if token is not None:
            return token
        total = announced_total(response)
        page_size = self.get_page_size()
        if total is None or not page_size:
            return None
        # Every page before this one was full (a short one would have ended the paging), so the
        # records sent so far are the full pages plus this one.
        page = last_page_token_value if isinstance(last_page_token_value, int) else self.start_from_page
        sent = (page - self.start_from_page) * page_size + extracted_record_count(response, default=last_page_size)
        if sent < total:
            name = self._parameters_name or "this stream"
            raise AirbyteTracedException(
                message=(
                    f"The Mistral API announced {total} records for stream {name} but its pages ended after "
                    f"{sent}: the read stopped short and is retried by the next sync."
                ),
                internal_message=(
                    f"page {page} (page_size {page_size}) held "
                    f"{extracted_record_count(response, default=last_page_size)} records; total {total}"
                ),
                failure_type=FailureType.transient_error,
            )
        return None

    def __post_init__(self, parameters: Any) -> None:
        super().__post_init__(parameters)
        # The stream's name reaches components through $parameters; it names the stream in the message.
        self._parameters_name = (parameters or {}).get("name")


# The CDK's retry loop (HttpClient) counts every attempt of a request against `max_retries` and
# `max_time`, 429s included, and gives up with "Rate limit retry budget exhausted". Under a rate limit
# with many workers a request can be refused that often while the API serves the others at its pace,
# so the read failed with records still unread. A 429 is the API asking the source to wait, not a
# failure: MistralErrorHandler lifts the loop's bounds and applies them itself, `max_retries` to the
# failures only (5xx, dropped connections, broken bodies) and `max_time` to refusals: a request
# refused is retried as the API says for as long as the API answered some request successfully in
# the last `max_time` seconds.
_LOOP_UNBOUNDED_TRIES = 1_000_000_000
_LOOP_UNBOUNDED_SECONDS = 10 * 365 * 24 * 3600
# A 429 without Retry-After falls to the exponential backoff; its attempt number stops growing here
# (2**6 s, about a minute) so that a long rate limit is still polled.
_MAX_REFUSAL_ATTEMPT = 6


def _clock() -> float:
    return time.monotonic()


class _ApiProgress:
    """When the API last served a request, across every stream of the read: the rate limit is the
    workspace's, so one stream's success shows that the others' refusals are only a queue."""

    def __init__(self) -> None:
        self.last_success = float("-inf")

    def served(self) -> None:
        self.last_success = _clock()


_API_PROGRESS = _ApiProgress()


@dataclass(frozen=True)
class SkippedRoute:
    stream: str
    route: str  # method and path, e.g. "GET /v1/agents/pages"
    status: int


class SkippedRoutes:
    """The routes skipped in this command (a read, a check), by stream and route: each is warned
    about once, though several requesters may meet it (the two parent lists of batch_job_results,
    every window of batch_jobs), and `check`, which reads the models, fails when their route is
    absent instead of reporting that no model is offered. SourceMistral clears it as each command
    starts."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], SkippedRoute] = {}
        self._lock = threading.Lock()

    def note(self, skipped: SkippedRoute) -> bool:
        """True the first time this stream skips this route."""
        with self._lock:
            return self._seen.setdefault((skipped.stream, skipped.route), skipped) is skipped

    def of(self, stream: str) -> SkippedRoute | None:
        return next((s for (name, _), s in self._seen.items() if name == stream), None)

    def left_unread(self, stream: str) -> bool:
        """Whether the stream skipped a list it reads (not a single gone result file): it was not read
        whole, and its status says so."""
        with self._lock:
            return any(name == stream and not s.route.endswith("/content") for (name, _), s in self._seen.items())

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


SKIPPED_ROUTES = SkippedRoutes()


class _Attempts:
    """The attempts of the request a thread is sending. The CDK sends one request at a time per
    thread and retries it in that thread, and every attempt's answer (or connection error) comes
    through the handler, so the thread tells which request an answer belongs to. The answer's own
    request object does not: a transport adapter may hand back a new one per attempt. The URL tells
    a retry from the thread's next request, should a retry loop end without a final answer."""

    __slots__ = ("url", "failures", "refusals", "first_refusal", "refused_last")

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.failures = 0
        self.refusals = 0
        self.first_refusal: float | None = None
        self.refused_last = False


def _url_of(response_or_exception: Any) -> str | None:
    return getattr(getattr(response_or_exception, "request", None), "url", None)


@dataclass
class MistralErrorHandler(DefaultErrorHandler):
    """DefaultErrorHandler as the manifest configures it, with four corrections: an ignored answer
    (a route the API does not serve) is logged as a warning naming the stream and the route (see
    `_skip`); a redirect, stopped before it was followed (source_mistral/redirects.py), fails as a
    config error naming the host it pointed to; an answer a rule retries is transient by definition,
    so when retries run out the stream fails as a transient error (the CDK takes the failure type of
    a RETRY from its status-code table, which has no entry for a 200 with a broken body, and would
    report it as a system error); and a 429 does not use up the retries (see above)."""

    def __post_init__(self, parameters: Any) -> None:
        super().__post_init__(parameters)
        parameters = parameters or {}
        # The stream's name reaches components through $parameters (a parent list read for another
        # stream carries that stream's name).
        self.stream_name = parameters.get("name") or "this stream"
        self.absent_route_hint = parameters.get("absent_route_hint")
        self.retries_per_request = self.max_retries if self.max_retries is not None else 5
        self.seconds_without_success = self.max_time
        self.max_retries = _LOOP_UNBOUNDED_TRIES
        self.max_time = _LOOP_UNBOUNDED_SECONDS
        self._in_flight = threading.local()
        # The strategies are told how many times this request failed, or was refused, rather than
        # how many attempts it made in all: a 5xx after twenty 429s waits as a first failure does.
        self.backoff_strategies = [_AttemptsOfOneKind(strategy, self) for strategy in self.backoff_strategies or []]

    def resolve(self, response_or_exception: requests.Response | Exception | None) -> ErrorResolution:
        """What the manifest's rules make of one answer."""
        if isinstance(response_or_exception, RedirectRefused):
            return ErrorResolution(ResponseAction.FAIL, FailureType.config_error, response_or_exception.message)
        resolution = super().interpret_response(response_or_exception)
        if resolution.response_action == ResponseAction.IGNORE and isinstance(response_or_exception, requests.Response):
            self._skip(response_or_exception)
        if resolution.response_action == ResponseAction.RETRY and resolution.failure_type == FailureType.system_error:
            return ErrorResolution(ResponseAction.RETRY, FailureType.transient_error, resolution.error_message)
        return resolution

    def _skip(self, response: requests.Response) -> None:
        """An ignored answer is a route this API does not serve (the manifest ignores only 404 and
        405): the stream is skipped, and the user is told at WARN, once per stream and route. The CDK logs an
        ignored answer at INFO only, which a platform showing warnings and errors hides."""
        route = f"{response.request.method} {urlsplit(response.request.url or '').path}"
        if not SKIPPED_ROUTES.note(SkippedRoute(self.stream_name, route, response.status_code)):
            return
        hint = f" {self.absent_route_hint}" if self.absent_route_hint else ""
        _logger.warning(
            f"Skipping stream {self.stream_name}: the API answered HTTP {response.status_code} for {route}, a route "
            f"(or a file) this API or proxy does not serve.{hint} The sync goes on with the other streams."
        )

    def interpret_response(self, response_or_exception: requests.Response | Exception | None) -> ErrorResolution:
        resolution = self.resolve(response_or_exception)
        action = resolution.response_action
        if action not in (ResponseAction.RETRY, ResponseAction.RATE_LIMITED):
            if action == ResponseAction.SUCCESS:
                _API_PROGRESS.served()
            self.forget()
            return resolution
        attempts = self._attempts(_url_of(response_or_exception))
        attempts.refused_last = action == ResponseAction.RATE_LIMITED
        if attempts.refused_last:
            return self._refused(attempts, resolution, response_or_exception)
        attempts.failures += 1
        if attempts.failures > self.retries_per_request:
            self._give_up(
                f"{resolution.error_message or 'The request failed.'} "
                f"Gave up after {self.retries_per_request} retries.",
                resolution.failure_type or FailureType.transient_error,
                response_or_exception,
            )
        return resolution

    def _refused(self, attempts: _Attempts, resolution: ErrorResolution, response_or_exception: Any) -> ErrorResolution:
        now = _clock()
        attempts.refusals += 1
        if attempts.first_refusal is None:
            attempts.first_refusal = now
        waiting_since = max(_API_PROGRESS.last_success, attempts.first_refusal)
        if now - waiting_since < self.seconds_without_success:
            return resolution
        self._give_up(
            "The Mistral API refused every request (HTTP 429, rate limit) "
            f"for {self.seconds_without_success:g} seconds and served none; the sync stops here "
            "and can be retried once the workspace's rate limit allows requests again.",
            FailureType.transient_error,
            response_or_exception,
        )

    def _give_up(self, message: str, failure_type: FailureType, response_or_exception: Any) -> NoReturn:
        """Ends the request. Raised rather than answered as FAIL: the CDK's FAIL path reads the body
        for its message, and a body that broke on the way (a result file cut short) raises a
        connection error there, which the CDK's outer retry loop would take for a new failure and
        retry without end."""
        self.forget()
        if isinstance(response_or_exception, requests.Response):
            last = f"HTTP {response_or_exception.status_code}"
        else:
            last = f"{type(response_or_exception).__name__}: {response_or_exception}"
        raise AirbyteTracedException(
            message=message, internal_message=f"{message} Last answer: {last}.", failure_type=failure_type
        )

    def _attempts(self, url: str | None) -> _Attempts:
        attempts = getattr(self._in_flight, "attempts", None)
        if attempts is None or attempts.url != url:
            attempts = self._in_flight.attempts = _Attempts(url)
        return attempts

    def forget(self) -> None:
        """The thread's request is done (answered, failed, or abandoned)."""
        self._in_flight.attempts = None

    def attempt_number(self) -> int:
        attempts = getattr(self._in_flight, "attempts", None)
        if attempts is None:
            return 1
        if attempts.refused_last:
            return min(attempts.refusals, _MAX_REFUSAL_ATTEMPT)
        return max(attempts.failures, 1)


class _AttemptsOfOneKind(BackoffStrategy):
    """A manifest backoff strategy, given the attempt number of the kind of trouble at hand."""

    def __init__(self, strategy: BackoffStrategy, handler: MistralErrorHandler) -> None:
        self.strategy = strategy
        self.handler = handler

    def backoff_time(self, response_or_exception: Any, attempt_count: int) -> float | None:
        try:
            return self.strategy.backoff_time(response_or_exception, self.handler.attempt_number())
        except Exception:
            # A strategy that refuses to wait (Retry-After beyond its cap) ends the request here.
            self.handler.forget()
            raise


@dataclass
class JsonLinesErrorHandler(MistralErrorHandler):
    """The manifest's error rules, plus one for JSON Lines bodies: a 2xx answer with a line that is
    not JSON is a body cut short on the way, retried like a 5xx. The manifest's response filters see
    the body parsed as one JSON document (or {} when it is not one, as every multi-line file is), so
    they cannot tell a whole file from a cut one; and the CDK's JSON Lines parser only logs a warning
    for a broken line and drops it, so without this rule the last results of a cut file vanish."""

    def resolve(self, response_or_exception: requests.Response | Exception | None) -> ErrorResolution:
        if isinstance(response_or_exception, requests.Response) and response_or_exception.ok:
            try:
                broken = _has_broken_line(response_or_exception)
            except (requests.RequestException, urllib3.exceptions.HTTPError):
                # The connection ended before the body announced by Content-Length (or its last
                # chunk) arrived: a network failure, so a retry, and a transient error once retries
                # run out. Raised from here, the CDK's backoff would retry it too but then let the
                # bare ChunkedEncodingError end the stream, which the sync reports as a config error.
                return ErrorResolution(
                    response_action=ResponseAction.RETRY,
                    failure_type=FailureType.transient_error,
                    error_message=(
                        "Mistral's answer with a file's content ended before the whole body arrived; retrying."
                    ),
                )
            if broken:
                return ErrorResolution(
                    response_action=ResponseAction.RETRY,
                    failure_type=FailureType.transient_error,
                    error_message="Mistral sent a file whose content is cut short (a line is not JSON); retrying.",
                )
        return super().resolve(response_or_exception)


def _has_broken_line(response: requests.Response) -> bool:
    """Reads the whole body here, inside the request's retry loop, so that a connection that breaks
    mid-body is retried like any dropped connection. The CDK streams JSON Lines bodies from
    `response.raw`, so the body read here is handed back to it as a fresh stream. One file is held in
    memory at a time per stream worker."""
    content = response.content
    replay = io.BytesIO(content)
    replay.auto_close = False  # type: ignore[attr-defined]  # the CDK's decoder sets it on urllib3 streams
    response.raw = replay
    for line in content.splitlines():
        if not line.strip():
            continue
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError:
            return True
    return False
