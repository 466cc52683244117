"""The reader thread's side of a sync: the typed messages it hands to the event loop, and the byte
window that pauses reading while too much has been read but not yet committed.

The window bounds the *bytes* read but not yet committed, not a record count: records range from
tens of bytes to megabytes, and an embedding adds 4 KB to each."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from destination_mistral.protocol.messages import Record, State, StreamStatus
from destination_mistral.sinks.schema import StreamPlan
from destination_mistral.sync.streams import StreamKey

# What one record costs in memory beyond its JSON size: a Python dict is ~3x its JSON text, and the
# result (an answer, or a 4-byte-per-dimension vector) comes on top.
DICT_OVERHEAD_FACTOR = 3
ITEM_OVERHEAD_BYTES = 600
FEED_CHUNK = 64
# A full window lets reading resume once this share of it (1/RESUME_SHARE) is free.
RESUME_SHARE = 8


@dataclass(frozen=True, slots=True)
class RecordIn:
    record: Record
    cost: int  # the bytes it took from the window


@dataclass(frozen=True, slots=True)
class InputFailed:
    """The input could not be read on: the sync stops where it was read."""

    error: BaseException


class EndOfInput:
    """No message follows: the input ended, or the sync failed and the dispatcher must stop waiting."""

    __slots__ = ()


END_OF_INPUT = EndOfInput()

Inbound = RecordIn | State | StreamStatus | InputFailed | EndOfInput


class ByteWindow:
    """A counting semaphore over bytes, shared by the reader thread and the event loop."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._cond = threading.Condition()
        self._closed = False
        # Whether reading waits for room: what is complete must then be committed at once, however
        # little of the window it holds, or reading waits for the next timed commit.
        self.reading_waits = False
        self.on_wait: Callable[[], None] | None = None  # told, from the reader thread, when reading starts to wait

    def try_acquire(self, amount: int) -> bool:
        """Takes the bytes if they fit now (or the window is closed: the caller then stops)."""
        with self._cond:
            if self._closed or (self.used > 0 and self.used + amount > self.capacity):
                return False
            self.used += amount
            return True

    def acquire(self, amount: int) -> bool:
        with self._cond:
            # A single record larger than the window still passes, alone.
            if not self._closed and self.used > 0 and self.used + amount > self.capacity:
                # Once full, reading waits for a share of the window to free: records then arrive in
                # runs and are prepared back to back, not one between every two answers, where
                # each finds the processor's caches cold (a third more CPU to split a text).
                resume_at = self.capacity - self.capacity // RESUME_SHARE
                self.reading_waits = True
                if self.on_wait is not None:
                    self.on_wait()
                while not self._closed and self.used > 0 and self.used + amount > resume_at:
                    self._cond.wait()
                self.reading_waits = False
            if self._closed:
                return False
            self.used += amount
            return True

    def release(self, amount: int) -> None:
        with self._cond:
            self.used = max(0, self.used - amount)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def pressure(self) -> float:
        return self.used / self.capacity if self.capacity else 1.0


# The fewest characters a chunk is expected to hold, for the memory a chunked record's vectors take.
CHARS_PER_CHUNK = 400
CHUNK_TEXT_FACTOR = 5
CHUNK_OVERHEAD_BYTES = 1500


def cost_of(plan: StreamPlan | None, data: Mapping[str, Any]) -> int:
    """The bytes a record holds in memory from its reading until its commit."""
    json_size = len(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS))
    size = json_size * DICT_OVERHEAD_FACTOR + ITEM_OVERHEAD_BYTES
    if plan is not None and plan.enrichment_mode == "embeddings":
        size += 4 * (plan.embedding_dim or 1024) + 200
    elif plan is not None and plan.chunked:
        # The chunks' texts (the record's text again, overlaps included, at up to 4 bytes a
        # character), and per chunk a float32 vector and its objects; a chunk holds at least a few
        # hundred characters of the record.
        size += json_size * CHUNK_TEXT_FACTOR
        size += (1 + json_size // CHARS_PER_CHUNK) * (4 * (plan.embedding_dim or 1024) + CHUNK_OVERHEAD_BYTES)
    elif plan is not None and plan.enrichment_mode == "chat":
        size += 2048
    return size


class Handover:
    """Messages travel to the loop in chunks: one wake-up of the loop per message costs a syscall
    and a loop iteration each, a visible share of the CPU at thousands of records/s. While the loop
    is idle (nothing handed over is still unread), each message goes at once, so that a slow
    source's records are not held back waiting for a chunk to fill.

    `handed` is written by the reader thread and `queued` by the loop: one writer each, so no lock."""

    def __init__(self, inbox: asyncio.Queue[Inbound], loop: asyncio.AbstractEventLoop) -> None:
        self._inbox = inbox
        self._loop = loop
        self.chunk: list[Inbound] = []
        self.handed = 0  # chunks handed to the loop
        self.queued = 0  # chunks the loop has put in the inbox

    def loop_is_idle(self) -> bool:
        return self.handed == self.queued and self._inbox.empty()

    def send(self) -> None:
        if self.chunk:
            self.handed += 1
            self._loop.call_soon_threadsafe(self._queue, self.chunk)
            self.chunk = []

    def send_last(self, message: InputFailed | EndOfInput) -> None:
        self._loop.call_soon_threadsafe(self._inbox.put_nowait, message)

    def _queue(self, messages: list[Inbound]) -> None:  # on the loop
        self.queued += 1
        put = self._inbox.put_nowait
        for message in messages:
            put(message)


class Reader:
    """Reads the input in its own thread and hands it to the loop, pausing while the window is full."""

    def __init__(
        self,
        plans: Mapping[StreamKey, StreamPlan],
        window: ByteWindow,
        inbox: asyncio.Queue[Inbound],
        loop: asyncio.AbstractEventLoop,
        failed: Callable[[], bool],
    ) -> None:
        self._plans = plans
        self._window = window
        self._inbox = inbox
        self._loop = loop
        self._failed = failed

    def feed(self, messages: Iterable[Record | State | StreamStatus]) -> None:
        """Runs in the reader thread until the input ends or the sync fails."""
        window = self._window
        handover = Handover(self._inbox, self._loop)
        try:
            for message in messages:
                if type(message) is Record:
                    record = message
                    cost = cost_of(self._plans.get((record.namespace or None, record.stream)), record.data)
                    if not window.try_acquire(cost):
                        # Records held here count in the window: hand them over before waiting
                        # for the committer to free space, or it would wait for them forever.
                        handover.send()
                        if not window.acquire(cost):
                            break
                    handover.chunk.append(RecordIn(record, cost))
                    if len(handover.chunk) >= FEED_CHUNK or handover.loop_is_idle():
                        handover.send()
                else:
                    handover.chunk.append(message)
                    handover.send()
                if self._failed():
                    break
        except BaseException as error:  # a broken input must end the sync, not hang it
            handover.send()
            handover.send_last(InputFailed(error))
        finally:
            handover.send()
            handover.send_last(END_OF_INPUT)
