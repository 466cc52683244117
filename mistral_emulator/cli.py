"""`mistral-emulator`: serve the emulator on a port and print one line with its URL (never the key)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence

from .app import create_app
from .server import start_site
from .settings import EmulatorSettings


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mistral-emulator", description="A local, deterministic Mistral API server.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument(
        "--api-key", default=None, help="key clients must present (default: $MISTRAL_EMULATOR_API_KEY, else 'test-key')"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--files", type=int, default=250)
    p.add_argument("--batch-jobs", type=int, default=120)
    p.add_argument("--agents", type=int, default=45)
    p.add_argument("--fine-tuning-jobs", type=int, default=30)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--latency-per-token-ms", type=float, default=0.0)
    p.add_argument(
        "--rate-limit-rps",
        type=float,
        default=None,
        help="requests per second per key (announced per minute in x-ratelimit-*-req-minute)",
    )
    p.add_argument(
        "--tokens-per-minute",
        type=float,
        default=None,
        help="prompt tokens per minute per key; a request costing more than is available gets 429",
    )
    p.add_argument(
        "--tpm-shape",
        choices=("smooth", "fixed"),
        default="smooth",
        help="smooth: a bucket refilling continuously; fixed: a window refusing until it ends",
    )
    p.add_argument(
        "--tpm-window-seconds",
        type=float,
        default=60.0,
        help="seconds of the per-minute rate available at once (bucket size / window length)",
    )
    p.add_argument(
        "--tokens-per-month",
        type=int,
        default=None,
        help="tokens (prompt + completion) per calendar month per key; once spent, 429",
    )
    p.add_argument(
        "--rate-limit-body",
        choices=("2026", "legacy"),
        default="2026",
        help='429 body: the 2026 error envelope or the older {"message": ...}',
    )
    p.add_argument("--fault-429", type=float, default=0.0)
    p.add_argument("--fault-500", type=float, default=0.0)
    p.add_argument("--fault-drop", type=float, default=0.0)
    p.add_argument("--fault-truncate", type=float, default=0.0)
    p.add_argument("--fault-routes", default=None, help="comma-separated paths faults apply to, e.g. /v1/embeddings")
    p.add_argument(
        "--no-fine-tuning", action="store_true", help="answer 404 on /v1/fine_tuning/jobs, as the current API does"
    )
    p.add_argument("--absent-routes", default=None, help="comma-separated routes answered 404, e.g. /v1/agents/pages")
    p.add_argument("--redirect-to", default=None, help="base URL every /v1 request is redirected to")
    p.add_argument("--redirect-status", type=int, default=307, help="status of those redirects")
    p.add_argument("--batch-queue-seconds", type=float, default=0.05, help="time a new batch job stays QUEUED")
    p.add_argument("--batch-seconds-per-request", type=float, default=0.0, help="pace of a RUNNING batch job")
    p.add_argument("--ocr-max-document-bytes", type=int, default=50 * 1024 * 1024, help="largest OCR document")
    p.add_argument("--ocr-max-pages", type=int, default=1000, help="most pages in one OCR document")
    p.add_argument("--auth-query-params", default="api_token,api_key,key")
    return p.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> EmulatorSettings:
    settings = EmulatorSettings(
        seed=args.seed,
        files=args.files,
        batch_jobs=args.batch_jobs,
        agents=args.agents,
        fine_tuning_jobs=args.fine_tuning_jobs,
        fine_tuning=not args.no_fine_tuning,
        auth_query_params=tuple(n for n in args.auth_query_params.split(",") if n),
        fault_routes=frozenset(r for r in args.fault_routes.split(",") if r) if args.fault_routes else None,
    )
    settings.update(
        latency_ms=args.latency_ms,
        latency_per_token_ms=args.latency_per_token_ms,
        rate_limit_rps=args.rate_limit_rps,
        tokens_per_minute=args.tokens_per_minute,
        tpm_shape=args.tpm_shape,
        tpm_window_seconds=args.tpm_window_seconds,
        tokens_per_month=args.tokens_per_month,
        rate_limit_body=args.rate_limit_body,
        fault_429=args.fault_429,
        fault_500=args.fault_500,
        fault_drop=args.fault_drop,
        fault_truncate=args.fault_truncate,
        batch_queue_seconds=args.batch_queue_seconds,
        batch_seconds_per_request=args.batch_seconds_per_request,
        absent_routes=[r for r in args.absent_routes.split(",") if r] if args.absent_routes else None,
        redirect_to=args.redirect_to,
        redirect_status=args.redirect_status,
        ocr_max_document_bytes=args.ocr_max_document_bytes,
        ocr_max_pages=args.ocr_max_pages,
    )
    return settings


async def _serve(args: argparse.Namespace, api_key: str) -> None:
    app = create_app(api_key, settings_from_args(args))
    runner, port = await start_site(app, args.host, args.port)
    print(f"mistral-emulator listening on http://{args.host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    api_key = args.api_key or os.environ.get("MISTRAL_EMULATOR_API_KEY") or "test-key"
    try:
        asyncio.run(_serve(args, api_key))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
