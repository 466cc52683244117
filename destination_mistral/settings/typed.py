"""The typed settings the rest of the destination reads, built from a config that has passed
validation (settings.parsing). Their defaults are the spec fields' own defaults, so the form shows
what a sync does when a field is left empty."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from destination_mistral.settings.enrichment import MIB, Enrichment
from destination_mistral.settings.spec_fields import defaults, field_schema
from mistral_connection import MistralConnection

_DUCKDB = defaults("output", "duckdb")
_POSTGRES = defaults("output", "postgres")
_LIMITS = defaults("limits")
_DELIVERY = defaults("delivery")


@dataclass(frozen=True)
class PostgresSettings:
    host: str
    database: str
    username: str
    # Never in a repr, a log line or a message: the settings are printed by nothing, but a traceback
    # of a failing test or a debugger would show them.
    password: str = field(default="", repr=False)
    port: int = _POSTGRES["port"]
    ssl_mode: str = _POSTGRES["ssl_mode"]
    hnsw_index: bool = _POSTGRES["hnsw_index"]

    @property
    def location(self) -> str:
        """Where the output is, as messages name it: without the password."""
        return f"postgresql://{self.username}@{self.host}:{self.port}/{self.database}"


@dataclass(frozen=True)
class OutputSettings:
    kind: str  # duckdb | jsonl | postgres
    path: Path | None  # the DuckDB file (or md:<database>), or the JSONL directory; None for PostgreSQL
    schema: str = _DUCKDB["schema"]
    # The oldest DuckDB release that must read a DuckDB file this connector creates.
    storage_version: str = _DUCKDB["storage_version"]
    motherduck_token: str | None = field(default=None, repr=False)
    postgres: PostgresSettings | None = None

    @property
    def is_motherduck(self) -> bool:
        return self.kind == "duckdb" and is_motherduck_path(str(self.path))

    @property
    def location(self) -> str:
        return self.postgres.location if self.postgres is not None else str(self.path)

    @property
    def secrets(self) -> list[str]:
        """The values no message may show."""
        given = [self.motherduck_token, self.postgres.password if self.postgres else None]
        return [value for value in given if value]


def is_motherduck_path(location: str) -> bool:
    """DuckDB opens `md:<database>` (or `motherduck:<database>`) on MotherDuck rather than a file."""
    return location.strip().lower().startswith(("md:", "motherduck:"))


@dataclass(frozen=True)
class Limits:
    max_concurrent_requests: int = _LIMITS["max_concurrent_requests"]
    requests_per_second: float | None = None
    # A cap on the tokens sent per minute (the server's own limit is learned from its headers).
    tokens_per_minute: int | None = None
    max_retries: int = _LIMITS["max_retries"]
    # How long a failing request is retried, and how long 429s are waited on with nothing succeeding.
    max_retry_seconds: float = float(_LIMITS["max_retry_seconds"])
    timeout_seconds: float = float(_LIMITS["timeout_seconds"])
    max_buffer_bytes: int = int(_LIMITS["max_buffer_mb"] * MIB)
    # The largest answer read: beyond it the answer is a service failure, not a memory spike.
    max_response_bytes: int = int(_LIMITS["max_response_mb"] * MIB)


@dataclass(frozen=True)
class Delivery:
    mode: str = _DELIVERY["mode"]  # online | batch | auto
    auto_threshold: int = _DELIVERY["auto_threshold"]
    requests_per_job: int = _DELIVERY["requests_per_job"]
    poll_max_seconds: float = float(_DELIVERY["poll_max_seconds"])


@dataclass(frozen=True)
class DestinationConfig:
    connection: MistralConnection
    enrichment: Enrichment
    overrides: Mapping[str, Enrichment]
    output: OutputSettings
    on_error: str = field_schema("on_error")["default"]
    limits: Limits = field(default_factory=Limits)
    cache_enabled: bool = defaults("cache")["enabled"]
    delivery: Delivery = field(default_factory=Delivery)

    def enrichment_for(self, stream_name: str) -> Enrichment:
        return self.overrides.get(stream_name, self.enrichment)

    def enrichment_location(self, stream_name: str) -> str:
        """Where the config sets the enrichment of `stream_name`, as errors name it. The overrides
        keep the config's order (parsing adds them one entry at a time)."""
        if stream_name in self.overrides:
            return f"stream_overrides[{list(self.overrides).index(stream_name)}].enrichment"
        return "enrichment"

    def all_enrichments(self) -> list[Enrichment]:
        return [self.enrichment, *self.overrides.values()]
