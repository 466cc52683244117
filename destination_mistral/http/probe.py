"""The first request of a sync goes alone: its answer's headers may announce the account's limits,
and a first burst of max_concurrent_requests would otherwise meet a wall of 429s. Costs one round
trip per sync."""

from __future__ import annotations

import asyncio


class FirstRequestProbe:
    def __init__(self) -> None:
        self._probed: asyncio.Event | None = None
        self._probing = False

    async def wait(self) -> None:
        """Returns at once for the first request; the others wait until it has its answer."""
        if self._probed is None:
            self._probed = asyncio.Event()
            self._probing = True
            return
        if not self._probed.is_set():
            await self._probed.wait()

    def end(self) -> None:
        """The first request is over (answered or not): the others may go."""
        if self._probing:
            self._probing = False
            self._probed.set()
