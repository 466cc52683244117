"""Every knob of the emulator in one dataclass, so the CLI, the test fixtures and `POST /admin/config`
speak the same names."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Knobs that may change while the server runs; the seeded account sizes and the seed may not, because
# the account is generated once at start-up.
# Knobs of the account limits: setting any of them at run time starts fresh meters (see RateLimiter.reset).
LIMIT_KNOBS = frozenset({"rate_limit_rps", "tokens_per_minute", "tpm_shape", "tpm_window_seconds", "tokens_per_month"})

RUNTIME_KNOBS = frozenset(
    {
        "latency_ms",
        "latency_per_token_ms",
        "rate_limit_rps",
        "tokens_per_minute",
        "tpm_shape",
        "tpm_window_seconds",
        "tokens_per_month",
        "rate_limit_body",
        "fault_429",
        "fault_500",
        "fault_drop",
        "fault_truncate",
        "fault_routes",
        "fine_tuning",
        "absent_routes",
        "redirect_to",
        "redirect_status",
        "batch_queue_seconds",
        "batch_seconds_per_request",
        "ocr_max_document_bytes",
        "ocr_max_pages",
    }
)


@dataclass
class EmulatorSettings:
    seed: int = 0
    # Seeded account sizes.
    files: int = 250
    batch_jobs: int = 120
    agents: int = 45
    fine_tuning_jobs: int = 30
    # Latency model: a fixed part on every /v1 request plus a part per token processed
    # (prompt + completion for chat, input tokens for embeddings).
    latency_ms: float = 0.0
    latency_per_token_ms: float = 0.0
    # Requests per second per API key; None or 0 disables rate limiting.
    rate_limit_rps: float | None = None
    # Tokens per minute per API key (a request costs its prompt tokens); None or 0 disables it.
    tokens_per_minute: float | None = None
    # "smooth": a bucket refilling at tokens_per_minute/60 per second; "fixed": a window that admits
    # tokens_per_minute and refuses what does not fit until it ends. Which one the real API uses is
    # unconfirmed (NOTES §1), so a client must be tested under both.
    tpm_shape: str = "smooth"
    # How much of the per-minute rate is available at once: the smooth bucket's capacity and the fixed
    # window's length, in seconds. 60 is the real shape; benchmarks shorten it to see many windows in a
    # short run while the announced per-minute limit, and so the long-run rate, stays the same.
    tpm_window_seconds: float = 60.0
    # Tokens per calendar month per API key (prompt + completion); None or 0 disables it.
    tokens_per_month: int | None = None
    # Body of a 429: "2026" (the error envelope, code "1300") or "legacy" ({"message": ...}).
    rate_limit_body: str = "2026"
    # Fault rates in [0, 1], drawn deterministically from the seed in request order.
    fault_429: float = 0.0
    fault_500: float = 0.0
    fault_drop: float = 0.0
    fault_truncate: float = 0.0
    # Route paths (e.g. "/v1/embeddings", or "POST /v1/embeddings") that faults apply to; None = every /v1 route.
    fault_routes: frozenset[str] | None = None
    # The current API answers 404 for the fine-tuning jobs endpoints; False reproduces that.
    fine_tuning: bool = True
    # Routes (e.g. "/v1/agents/pages", or "GET /v1/agents/pages") answered 404 {"detail":"Not Found"}, as a
    # deployment or proxy that does not serve them answers; None = every route is served.
    absent_routes: frozenset[str] | None = None
    # A base URL (e.g. "https://other.example") that every /v1 request is redirected to, path and query
    # kept, with `redirect_status`, as a proxy or load balancer in front of the API may answer. None: no
    # redirect.
    redirect_to: str | None = None
    redirect_status: int = 307
    # Query parameter names accepted as the key for proxy-style access.
    auth_query_params: tuple[str, ...] = ("api_token", "api_key", "key")
    # Batch jobs created through the API: time spent QUEUED, and time per request while RUNNING.
    batch_queue_seconds: float = 0.05
    batch_seconds_per_request: float = 0.0
    # OCR limits: Mistral's OCR docs (not the spec, not NOTES) state 50 MB and 1,000 pages per document;
    # unconfirmed, so both are knobs. A document over either gets a 400 (see mistral_emulator/NOTES.md).
    ocr_max_document_bytes: int = 50 * 1024 * 1024
    ocr_max_pages: int = 1000
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.fault_routes is not None and not isinstance(self.fault_routes, frozenset):
            self.fault_routes = frozenset(self.fault_routes)
        if self.absent_routes is not None and not isinstance(self.absent_routes, frozenset):
            self.absent_routes = frozenset(self.absent_routes)
        self.auth_query_params = tuple(self.auth_query_params)

    def update(self, **knobs: Any) -> None:
        """Changes runtime knobs in place; unknown or start-up-only names raise ValueError so that a typo
        in a test is loud instead of silently ignored."""
        unknown = set(knobs) - RUNTIME_KNOBS
        if unknown:
            raise ValueError(f"not runtime knobs: {sorted(unknown)}; allowed: {sorted(RUNTIME_KNOBS)}")
        for name, value in knobs.items():
            if name in ("fault_routes", "absent_routes") and value is not None:
                value = frozenset(value)
            if name == "redirect_status" and value not in (301, 302, 303, 307, 308):
                raise ValueError(f"redirect_status must be 301, 302, 303, 307 or 308, got {value!r}")
            if name in ("rate_limit_rps", "tokens_per_minute") and value is not None:
                value = float(value)
                if value < 0:
                    raise ValueError(f"{name} must not be negative, got {value}")
            if name == "tokens_per_month" and value is not None:
                value = int(value)
                if value < 0:
                    raise ValueError(f"tokens_per_month must not be negative, got {value}")
            if name in ("ocr_max_document_bytes", "ocr_max_pages"):
                value = int(value)
                if value <= 0:
                    raise ValueError(f"{name} must be positive, got {value}")
            if name == "tpm_window_seconds":
                value = float(value)
                if value <= 0:
                    raise ValueError(f"tpm_window_seconds must be positive, got {value}")
            if name == "tpm_shape" and value not in ("smooth", "fixed"):
                raise ValueError(f"tpm_shape must be 'smooth' or 'fixed', got {value!r}")
            if name == "rate_limit_body" and value not in ("2026", "legacy"):
                raise ValueError(f"rate_limit_body must be '2026' or 'legacy', got {value!r}")
            if name.startswith("fault_") and name != "fault_routes":
                value = float(value)
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"{name} must be within [0, 1], got {value}")
            setattr(self, name, value)
        total = self.fault_429 + self.fault_500 + self.fault_drop + self.fault_truncate
        if total > 1.0:
            raise ValueError(f"fault rates add up to {total} > 1")

    def knobs(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in sorted(RUNTIME_KNOBS)}
        for name in ("fault_routes", "absent_routes"):
            if out[name] is not None:
                out[name] = sorted(out[name])
        return out

    def copy(self) -> EmulatorSettings:
        return dataclasses.replace(self, extra=dict(self.extra))
