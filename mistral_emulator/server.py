"""Ways to run the emulator: `EmulatorServer` in a background thread of the current process (tests),
and `EmulatorProcess` as a separate process (benchmarks, where the emulator must not share the
client's GIL)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

from aiohttp import web

from .account import Account
from .app import STATE, EmulatorState, create_app
from .settings import EmulatorSettings

_LISTENING_RE = re.compile(r"listening on (http://[^\s]+)")


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    # access_log=None: an access log line would carry the query string, and with it a key passed as
    # `?api_token=`.
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, bound


class EmulatorServer:
    """`with EmulatorServer(api_key="k", settings=EmulatorSettings(files=250)) as emu: ...`

    The app runs on its own event loop in a daemon thread, on 127.0.0.1 and a free port. Methods that
    touch server state hop onto that loop, so they are safe to call from the test's thread."""

    def __init__(
        self,
        api_key: str = "test-key",
        settings: EmulatorSettings | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.api_key = api_key
        self.settings = settings or EmulatorSettings()
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._state: EmulatorState | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # ---- lifecycle --------------------------------------------------------------------------------
    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(target=self._serve, name="mistral-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("emulator did not start within 30 s")
        if self._error is not None:
            raise RuntimeError("emulator failed to start") from self._error
        return self

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            app = create_app(self.api_key, self.settings)
            self._state = app[STATE]
            self._runner, self.port = loop.run_until_complete(start_site(app, self.host, self.port))
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup())
        loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---- access -----------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def account(self) -> Account:
        assert self._state is not None, "server not started"
        return self._state.account

    def _call(self, fn, *args: Any, **kwargs: Any) -> Any:
        assert self._loop is not None, "server not started"

        async def run() -> Any:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def stats(self) -> dict:
        return self._call(lambda: self._state.stats.snapshot())

    def reset_stats(self) -> None:
        self._call(lambda: self._state.stats.reset())

    def configure(self, **knobs: Any) -> dict:
        return self._call(lambda: self._state.configure(**knobs))

    def use_clock(self, clock=None, wall=None) -> None:
        """Puts the account limits on other clocks (a monotonic one for the per-second and per-minute
        meters, a wall clock for the calendar month) and starts fresh meters, so that a test can step time
        instead of sleeping. None keeps the current clock."""

        def swap() -> None:
            limiter = self._state.limiter
            limiter.clock = clock or limiter.clock
            limiter.wall = wall or limiter.wall
            limiter.reset()

        self._call(swap)

    def advance(self, job_ids: list[str] | None = None) -> list[str]:
        """Completes seeded RUNNING/QUEUED batch jobs (see `POST /admin/advance`)."""
        return self._call(lambda: self._state.runner.advance(job_ids))


def settings_to_args(settings: EmulatorSettings) -> list[str]:
    args = [
        "--seed",
        str(settings.seed),
        "--files",
        str(settings.files),
        "--batch-jobs",
        str(settings.batch_jobs),
        "--agents",
        str(settings.agents),
        "--fine-tuning-jobs",
        str(settings.fine_tuning_jobs),
        "--latency-ms",
        str(settings.latency_ms),
        "--latency-per-token-ms",
        str(settings.latency_per_token_ms),
        "--fault-429",
        str(settings.fault_429),
        "--fault-500",
        str(settings.fault_500),
        "--fault-drop",
        str(settings.fault_drop),
        "--fault-truncate",
        str(settings.fault_truncate),
        "--batch-queue-seconds",
        str(settings.batch_queue_seconds),
        "--batch-seconds-per-request",
        str(settings.batch_seconds_per_request),
        "--auth-query-params",
        ",".join(settings.auth_query_params),
    ]
    if settings.rate_limit_rps:
        args += ["--rate-limit-rps", str(settings.rate_limit_rps)]
    if settings.tokens_per_minute:
        args += ["--tokens-per-minute", str(settings.tokens_per_minute)]
    if settings.tokens_per_month:
        args += ["--tokens-per-month", str(settings.tokens_per_month)]
    args += [
        "--tpm-shape",
        settings.tpm_shape,
        "--tpm-window-seconds",
        str(settings.tpm_window_seconds),
        "--rate-limit-body",
        settings.rate_limit_body,
    ]
    if settings.fault_routes:
        args += ["--fault-routes", ",".join(sorted(settings.fault_routes))]
    if not settings.fine_tuning:
        args.append("--no-fine-tuning")
    if settings.absent_routes:
        args += ["--absent-routes", ",".join(sorted(settings.absent_routes))]
    if settings.redirect_to:
        args += ["--redirect-to", settings.redirect_to, "--redirect-status", str(settings.redirect_status)]
    return args


class EmulatorProcess:
    """Runs `python -m mistral_emulator.cli` as a child process and reads the port from its first line.
    The key goes through the environment, not argv, so it does not show in `ps`."""

    def __init__(
        self,
        api_key: str = "test-key",
        settings: EmulatorSettings | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        python: str | None = None,
        extra_args: list[str] | None = None,
    ):
        self.api_key = api_key
        self.settings = settings or EmulatorSettings()
        self.host = host
        self.port = port
        self.python = python or sys.executable
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen | None = None
        self.base_url = ""

    def start(self, timeout: float = 30.0) -> EmulatorProcess:
        cmd = [
            self.python,
            "-m",
            "mistral_emulator.cli",
            "--host",
            self.host,
            "--port",
            str(self.port),
            *settings_to_args(self.settings),
            *self.extra_args,
        ]
        env = {**os.environ, "MISTRAL_EMULATOR_API_KEY": self.api_key}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            match = _LISTENING_RE.search(line)
            if match:
                self.base_url = match.group(1)
                self.port = int(self.base_url.rsplit(":", 1)[1])
                return self
        self.stop()
        raise RuntimeError("emulator process did not report its port")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _admin(self, method: str, path: str, payload: dict | None = None) -> dict:
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def stats(self) -> dict:
        return self._admin("GET", "/admin/stats")

    def reset_stats(self) -> None:
        self._admin("POST", "/admin/reset", {})

    def configure(self, **knobs: Any) -> dict:
        return self._admin("POST", "/admin/config", knobs)
