"""A chunk shared by records is paid once even when its answer arrives while another record's
lookup of the cache runs: it is then neither in flight nor in the cache the lookup read."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

from destination_mistral.enrich.results import Result
from destination_mistral.sync.answers import FreshAnswers, InFlight
from destination_mistral.sync.dispatcher import Dispatcher


def test_a_chunk_answered_while_the_cache_is_looked_up_is_known_and_not_sent_again():
    fresh = FreshAnswers()
    answer = Result(value=[0.25, 0.5], model="mistral-embed", prompt_tokens=12)

    class Sink:
        def lookup(self, keys: list[str]) -> dict[str, Result]:
            # Another record's request for the shared chunk is answered meanwhile: its answer joins
            # this sync's answers, and this lookup, which read the cache before, does not see it.
            fresh.add("shared", "embeddings", answer)
            return {}

    with ThreadPoolExecutor(max_workers=1) as lookups:
        dispatcher = Dispatcher(
            SimpleNamespace(streams={}),  # type: ignore[arg-type]
            asyncio.Queue(),
            None,  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]
            fresh,
            InFlight(),
            Sink(),  # type: ignore[arg-type]
            lookups,
            None,  # type: ignore[arg-type]
            on_error="record",
            cache_enabled=True,
        )
        item = SimpleNamespace(prepared=SimpleNamespace(known={}, chunk_keys=["shared", "own"]))
        asyncio.run(dispatcher._known_chunks([item]))  # type: ignore[list-item]
    assert set(item.prepared.known) == {"shared"}, "the shared chunk is answered: not sent again"
    assert item.prepared.known["shared"].cached and item.prepared.known["shared"].value == [0.25, 0.5]
