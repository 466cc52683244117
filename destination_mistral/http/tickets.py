"""The requests the pacer has booked and not yet heard back from: what each was charged and where it
was booked, so that its answer (or its cancellation) settles exactly that."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from destination_mistral.http.minute_log import LoggedStart


@dataclass
class Ticket:
    """What a started request was charged, to settle when its answer arrives."""

    seq: int
    route: str
    estimate: float  # our own count
    charged: float  # what the bucket took (estimate x the route's ratio)
    started: float
    window: int | None = None  # the fixed window it was booked in (fixed-window mode)
    logged: LoggedStart | None = None  # its entry in the log of the last minute's starts


class InFlight:
    """The tickets not yet settled, in the order they were booked."""

    def __init__(self) -> None:
        self._tickets: dict[int, Ticket] = {}
        self._seq = itertools.count()

    def issue(
        self,
        route: str,
        estimate: float,
        charged: float,
        started: float,
        window: int | None,
        logged: LoggedStart | None,
    ) -> Ticket:
        ticket = Ticket(next(self._seq), route, estimate, charged, started, window, logged)
        self._tickets[ticket.seq] = ticket
        return ticket

    def drop(self, ticket: Ticket) -> bool:
        """Forgets `ticket`; False when it was no longer in flight (settled or cancelled already)."""
        return self._tickets.pop(ticket.seq, None) is not None

    def __iter__(self) -> Iterator[Ticket]:
        return iter(self._tickets.values())

    def charged_after(self, ticket: Ticket | None) -> float:
        """What the tickets booked after `ticket` were charged (all of them for None)."""
        return sum(t.charged for t in self._tickets.values() if ticket is None or t.seq > ticket.seq)

    def charged_ahead(self, now: float) -> float:
        """What the starts booked for later than `now` were charged."""
        return sum(t.charged for t in self._tickets.values() if t.started > now)
