"""The render budget of a template: its limits, the counter of steps, time and text that one render
carries, and the error a render over any of them ends with."""

from __future__ import annotations

from contextvars import ContextVar
from time import monotonic

# A template may build text, not exhaust the machine: the sandbox stops attribute access to Python
# internals but not work, and `{% for a in range(100000) %}{% for b in range(100000) %}...`,
# `'x' * 10**10` or a macro that calls itself twice per level would otherwise hold a sync for hours
# or take every byte of memory, for every record. Each limit ends that record with an error row and
# lets the sync go on. They are far above what a prompt needs: the largest context window is about
# a million characters, and a normal render takes microseconds and a few dozen steps.
MAX_RENDERED_CHARS = 1_000_000  # the rendered text, and any string or buffer built on the way
MAX_STEPS = 1_000_000  # loop iterations plus calls (macros, methods, globals), per render
MAX_SECONDS = 2.0  # wall clock per render, the backstop for steps that are each expensive
# All the text filters, calls, operators and buffers make in one render, kept or not: stops a loop
# or a lazy `map` from piling up strings that are each under the size limit.
MAX_PRODUCED_CHARS = 10 * MAX_RENDERED_CHARS
MAX_EXPONENT = 1000
MAX_INT_BITS = 1_000_000  # integers a template computes (3.3 MB of digits already)
_CLOCK_EVERY = 64  # read the clock every this many steps: a clock read costs more than a step


class TemplateBudgetExceeded(Exception):
    """A render went over one of the limits above; the message names the limit, never record text."""


class Budget:
    __slots__ = ("steps", "deadline", "produced")

    def __init__(self) -> None:
        self.steps = MAX_STEPS
        self.deadline = monotonic() + MAX_SECONDS
        self.produced = 0

    def tick(self) -> None:
        self.steps -= 1
        if not self.steps % _CLOCK_EVERY:
            if self.steps <= 0:
                raise TemplateBudgetExceeded(f"more than {MAX_STEPS:,} loop iterations and calls")
            if monotonic() > self.deadline:
                raise TemplateBudgetExceeded(f"took more than {MAX_SECONDS:g} s")

    def produce(self, chars: int) -> None:
        self.produced += chars
        if self.produced > MAX_PRODUCED_CHARS:
            raise TemplateBudgetExceeded(f"built more than {MAX_PRODUCED_CHARS:,} characters of text")


# The budget of the render in progress. A context variable rather than an attribute of the shared
# environment, so that renders in several threads each have their own. Outside `render` (config
# checks compiling a template) there is none and only the size limits apply.
CURRENT_BUDGET: ContextVar[Budget | None] = ContextVar("template_budget", default=None)


def tick() -> None:
    budget = CURRENT_BUDGET.get()
    if budget is not None:
        budget.tick()


def produce(chars: int) -> None:
    budget = CURRENT_BUDGET.get()
    if budget is not None:
        budget.produce(chars)


def too_long(what: str) -> TemplateBudgetExceeded:
    return TemplateBudgetExceeded(f"{what} would be longer than {MAX_RENDERED_CHARS:,} characters")
