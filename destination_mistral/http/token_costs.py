"""What a request costs in tokens: our own count, scaled by how the server counted earlier requests
of the same route (`x-ratelimit-tokens-query-cost`, else the answer's `usage`), so that an estimate
that was off does not accumulate."""

from __future__ import annotations

from collections.abc import Mapping

from destination_mistral.http.headers import float_header


def server_count(headers: Mapping[str, str], usage: Mapping[str, object] | None) -> float | None:
    """The tokens the server says an answered request cost, if it says."""
    actual = float_header(headers, "x-ratelimit-tokens-query-cost")
    if actual is None and isinstance(usage, Mapping):
        for name in ("total_tokens", "prompt_tokens"):
            value = usage.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                return float(value)
    return actual


class CostRatios:
    """Per route, the server's count over ours."""

    # The server's count is taken to be below ours only once it has counted this many of our tokens.
    CALIBRATION_TOKENS = 2_000

    def __init__(self) -> None:
        self.ratios: dict[str, float] = {}
        self._counted: dict[str, float] = {}  # per route, how many of our tokens the server has counted

    def cost_of(self, route: str, estimate: float) -> float:
        ratio = self.ratios.get(route, 1.0)
        if ratio < 1.0 and self._counted.get(route, 0.0) < self.CALIBRATION_TOKENS:
            # One short request (a probe of a single input) says little: 52 where we counted 54 would
            # have the first burst of full batches under-charged by 4%, and refused.
            ratio = 1.0
        return estimate * ratio

    def learn(self, route: str, estimate: float, actual: float | None) -> bool:
        """Learns from the server's count of a request we counted `estimate`; False when there is
        nothing to compare."""
        if actual is None or estimate <= 0:
            return False
        ratio = actual / estimate
        self._counted[route] = self._counted.get(route, 0.0) + estimate
        old = self.ratios.get(route)
        # Quick to learn that the server counts more (or the bucket over-spends), slow to forget it.
        weight = 0.5 if old is None or ratio > old else 0.1
        self.ratios[route] = ratio if old is None else old + weight * (ratio - old)
        return True
