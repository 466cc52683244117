"""Request counts for `GET /admin/stats`, so tests can assert what a client actually sent."""

from __future__ import annotations

from collections import defaultdict


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.total = 0
        self.routes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.tokens = {"prompt": 0, "completion": 0, "total": 0}
        self.embeddings = {"requests": 0, "inputs": 0, "max_inputs": 0, "tokens": 0}
        # Inputs of each embeddings request in arrival order (the last 10,000): how full a client's
        # batches were, which decides its throughput under a requests-per-second limit.
        self.embedding_batches: list[int] = []
        self.chat = {"requests": 0, "streamed": 0}
        self.fim = {"requests": 0, "streamed": 0}
        # Requests and inputs (texts or conversations) classified, per family of routes.
        self.classifiers = {
            "moderations": {"requests": 0, "inputs": 0},
            "classifications": {"requests": 0, "inputs": 0},
        }
        self.ocr = {"requests": 0, "pages": 0}
        self.faults: dict[str, int] = defaultdict(int)
        # 429s of the account limits (injected 429s count under `faults`), in total and by the limit that
        # refused: a client that paces well should see few "rps" or "tokens_minute" refusals.
        self.rate_limited = 0
        self.rate_limited_by = {"rps": 0, "tokens_minute": 0, "tokens_month": 0}

    def record(self, route: str, outcome: str) -> None:
        """`outcome` is the status code as a string, or "dropped" / "truncated" for transport faults."""
        self.total += 1
        self.routes[route][outcome] += 1

    def refused(self, cause: str) -> None:
        self.rate_limited += 1
        self.rate_limited_by[cause] += 1

    def add_chat(self, prompt: int, completion: int, streamed: bool) -> None:
        self.chat["requests"] += 1
        self.chat["streamed"] += int(streamed)
        self._tokens(prompt, completion)

    def add_fim(self, prompt: int, completion: int, streamed: bool) -> None:
        self.fim["requests"] += 1
        self.fim["streamed"] += int(streamed)
        self._tokens(prompt, completion)

    def add_classifier(self, family: str, inputs: int, tokens: int) -> None:
        counts = self.classifiers[family]
        counts["requests"] += 1
        counts["inputs"] += inputs
        self._tokens(tokens, 0)

    def add_ocr(self, pages: int, tokens: int) -> None:
        self.ocr["requests"] += 1
        self.ocr["pages"] += pages
        self._tokens(0, tokens)

    def add_embeddings(self, inputs: int, tokens: int) -> None:
        e = self.embeddings
        e["requests"] += 1
        e["inputs"] += inputs
        e["max_inputs"] = max(e["max_inputs"], inputs)
        e["tokens"] += tokens
        self.embedding_batches.append(inputs)
        del self.embedding_batches[:-10_000]
        self._tokens(tokens, 0)

    def _tokens(self, prompt: int, completion: int) -> None:
        self.tokens["prompt"] += prompt
        self.tokens["completion"] += completion
        self.tokens["total"] += prompt + completion

    def snapshot(self) -> dict:
        return {
            "total": self.total,
            "routes": {route: dict(counts) for route, counts in self.routes.items()},
            "tokens": dict(self.tokens),
            "embeddings": dict(self.embeddings),
            "embedding_batches": list(self.embedding_batches),
            "chat": dict(self.chat),
            "fim": dict(self.fim),
            "classifiers": {family: dict(counts) for family, counts in self.classifiers.items()},
            "ocr": dict(self.ocr),
            "faults": dict(self.faults),
            "rate_limited": self.rate_limited,
            "rate_limited_by": dict(self.rate_limited_by),
        }


__all__ = ["Stats"]
