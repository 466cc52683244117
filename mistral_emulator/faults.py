"""Injected faults, drawn from a seeded generator in request order so a run can be reproduced. Only
requests on eligible routes draw, so adding traffic to other routes does not shift the sequence."""

from __future__ import annotations

import random

from .settings import EmulatorSettings

SERVER_ERROR_STATUSES = (500, 502, 503)


class FaultInjector:
    def __init__(self, seed: int):
        self.rng = random.Random(seed * 1_000_003 + 0xFA17)

    @staticmethod
    def eligible(settings: EmulatorSettings, method: str, path: str) -> bool:
        routes = settings.fault_routes
        return routes is None or path in routes or f"{method} {path}" in routes

    def draw(self, settings: EmulatorSettings, method: str, path: str) -> str | None:
        """One of "429", "500", "502", "503", "drop", "truncate", or None."""
        rates = (settings.fault_429, settings.fault_500, settings.fault_drop, settings.fault_truncate)
        if not any(rates) or not self.eligible(settings, method, path):
            return None
        roll = self.rng.random()
        edge = 0.0
        for name, rate in zip(("429", "5xx", "drop", "truncate"), rates, strict=False):
            edge += rate
            if roll < edge:
                if name == "5xx":
                    return str(SERVER_ERROR_STATUSES[self.rng.randrange(len(SERVER_ERROR_STATUSES))])
                return name
        return None
