"""Progress lines and the end-of-sync summary. Counts and rates only: never keys, prompts, record
contents or answers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Counters:
    records_in: int = 0
    enriched: int = 0  # answered by the API in this sync
    cached: int = 0  # answered from the cache, or shared with an identical input of this sync
    failed: int = 0
    refused: int = 0  # records the output refused, stored as error rows (of those enriched or cached)
    cut: int = 0  # inputs cut to the model's limit (`input_too_long: truncate`)
    prepare_cpu: float = 0.0  # CPU seconds spent preparing inputs (fields read, templates, counts, chunks)
    split_cpu: float = 0.0  # of which splitting texts into chunks
    committed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    states_in: int = 0
    states_out: int = 0
    started: float = field(default_factory=time.monotonic)

    def rate(self) -> float:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return self.committed / elapsed

    def line(self, requests: int, retries: int, throttled: int) -> str:
        return (
            f"progress: records in={self.records_in} enriched={self.enriched} cached={self.cached} "
            f"failed={self.failed} committed={self.committed} tokens prompt={self.prompt_tokens} "
            f"completion={self.completion_tokens} requests={requests} retries={retries} throttled={throttled} "
            f"rate={self.rate():.1f} records/s"
        )

    def summary(self, requests: int, retries: int, throttled: int) -> str:
        elapsed = time.monotonic() - self.started
        return (
            f"summary: {self.committed} records committed in {elapsed:.1f} s ({self.rate():.1f} records/s): "
            f"{self.enriched} enriched by the API, {self.cached} from the cache, {self.failed} failed, "
            f"{f'{self.refused} refused by the output (stored as error rows), ' if self.refused else ''}"
            f"{self.cut} with their input cut to the model's limit; "
            f"inputs prepared (read, counted, split into chunks) in {self.prepare_cpu:.2f} CPU s"
            f"{f' (splitting {self.split_cpu:.2f} CPU s)' if self.split_cpu else ''}; "
            f"{self.prompt_tokens} prompt and {self.completion_tokens} completion tokens; "
            f"{requests} requests, {retries} retries, {throttled} throttled; "
            f"{self.states_out} of {self.states_in} state messages emitted"
        )
