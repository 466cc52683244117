"""A model of one Airbyte sync run against destination-mistral as the platform runs it, for the
property-based tests of the write path's invariants (test_write_invariants_properties.py).

A scenario is: a catalog of one or two streams, each in a sync mode (append, append_dedup,
overwrite, or a truncate refresh in append or append_dedup); a previous sync (generation 1, complete)
that leaves a table behind; the source's whole output for this sync (generation 2): records, STATE
messages (STREAM or GLOBAL), and each stream's COMPLETE status after its last record; and the
interruptions of its attempts (the source stops early, or the store fails on the n-th commit). The
runner replays it attempt after attempt, each attempt getting the input from just after the last
STATE the destination emitted, and checks after every STATE and every attempt:

1. every record covered by an emitted STATE is in the output (append: at least once; append_dedup:
   per key, the covered version with the newest cursor (`c`: a null one is the oldest, and of equal
   cursors the later record), each key once, each keyless record a row of its own;
   overwrite and truncate: the previous table whole until the stream's COMPLETE is applied, then
   only this generation's rows);
2. a STATE is emitted only once every record before it is committed as a row (with its answer or
   its error, in chat mode), with the record count of the records since the STATE before it;
3. (chat) no answer committed to the cache is paid for again;
4. a failing attempt raises an AirbyteTracedException of the right failure type naming the cause,
   and an attempt that returns has stored every record it was given.

Input lines are JSON, as the platform sends them, read through the destination's own parser."""

from __future__ import annotations

import contextlib
import errno
import json
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import duckdb
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from destination_mistral.protocol.catalog import catalog_from_json
from destination_mistral.protocol.input_lines import InputParser
from destination_mistral.sinks.duckdb_sink import STAGING_PREFIX, DuckDBSink
from destination_mistral.sync.runner import write_messages

MODES = ("append", "append_dedup", "overwrite", "truncate_append", "truncate_dedup")
DEDUP_MODES = ("append_dedup", "truncate_dedup")
STAGED_MODES = ("overwrite", "truncate_append", "truncate_dedup")
MISSING = "<missing>"  # a field left out of the record
GENERATION = 2
CHAT_ROUTE = "POST /v1/chat/completions"

SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": ["null", "integer"]},
        "tag": {"type": "string"},
        "review": {"type": "string"},
        "n": {"type": ["null", "integer"]},
        "c": {"type": ["null", "integer"]},  # the cursor of the append_dedup streams
    },
}

# Keys from a small set so that updates happen; sometimes none, or a string (castable or not).
KEYS = st.one_of(st.sampled_from([1, 2, 3]), st.sampled_from([None, MISSING, "2", "x"]))
# Cursors from a small set so that they tie, sometimes null or absent, or a string (castable or not).
CURSORS = st.sampled_from([1, 2, 3, None, MISSING])
ODD_CURSORS = st.sampled_from([1, 2, 3, None, MISSING, "2", "x"])
# Odd values for an integer column: a string, integers past BIGINT and past 64 bits, a float.
ODD_NUMBERS = st.sampled_from([7, -1, "five", 2**63 + 5, 2**70, -(2**63), 1.5, None, MISSING])
# Milliseconds, seconds, out of range both ways, not a number, absent.
EMITTED_AT = st.sampled_from([1_700_000_000_000, 1_700_000_000, 10**20, -(10**18), "soon", MISSING])
PLAIN_REVIEWS = ("good battery", "bad screen", "naïve café ☕ 𝔘nicode", "line\u2028break", "\ud800 lone surrogate", "")
CHAT_REVIEWS = ("good battery", "bad screen", "naïve café ☕ 𝔘nicode", "sound is rich", "   ")


@dataclass(frozen=True)
class Rec:
    stream: int
    tag: str
    key: Any
    review: str
    n: Any
    emitted_at: Any
    cursor: Any = MISSING

    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tag": self.tag, "review": self.review}
        if self.key is not MISSING:
            out["id"] = self.key
        if self.n is not MISSING:
            out["n"] = self.n
        if self.cursor is not MISSING:
            out["c"] = self.cursor
        return out


@dataclass(frozen=True)
class StateMsg:
    pos: int  # its index in the script, carried in the state blob so that an echo can be placed
    kind: str  # STREAM | GLOBAL
    stream: int


@dataclass(frozen=True)
class Complete:
    stream: int


Event = Rec | StateMsg | Complete


@dataclass(frozen=True)
class Scenario:
    modes: tuple[str, ...]
    previous: tuple[Rec, ...]
    script: tuple[Event, ...]
    # ("stop", k): the source fails after k more messages; ("enospc", n): the n-th commit of the
    # attempt fails with a full disk. A final attempt without interruption follows.
    interruptions: tuple[tuple[str, int], ...]

    def describe(self) -> str:
        lines = [f"modes={self.modes}", f"previous={[(r.stream, r.tag, r.key) for r in self.previous]}"]
        for pos, step in enumerate(self.script):
            if isinstance(step, Rec):
                lines.append(
                    f"  {pos}: record s{step.stream} {step.tag} id={step.key!r} c={step.cursor!r} "
                    f"review={step.review!r} n={step.n!r} emitted_at={step.emitted_at!r}"
                )
            elif isinstance(step, StateMsg):
                lines.append(f"  {pos}: STATE {step.kind} s{step.stream}")
            else:
                lines.append(f"  {pos}: COMPLETE s{step.stream}")
        lines.append(f"interruptions={self.interruptions}")
        return "\n".join(lines)


def scrubbed(text: str) -> str:
    """The text as the destination reads it: a lone surrogate becomes U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def effective_key(key: Any) -> int | None:
    """The key as the output holds it (the column is BIGINT): a string of digits is that integer,
    anything else that is not an integer is no key at all."""
    if isinstance(key, bool) or key is None or key is MISSING:
        return None
    if isinstance(key, int):
        return key
    if isinstance(key, str) and key.strip().lstrip("-").isdigit():
        return int(key)
    return None


def rank(record: Rec, order: int) -> tuple:
    """How append_dedup orders the records of one key: by cursor (the column is BIGINT, so it is
    read as a key is; a null one is the oldest), then by arrival (`order`)."""
    cursor = effective_key(record.cursor)
    return (cursor is not None, cursor or 0, order)


def newest_per_key(records: Sequence[Rec]) -> list[Rec]:
    """What an append_dedup table holds of these records (in arrival order): the record of each key
    with the newest cursor, and every keyless record."""
    best: dict[int, tuple[tuple, str]] = {}
    for order, r in enumerate(records):
        key = effective_key(r.key)
        if key is not None and (key not in best or rank(r, order) > best[key][0]):
            best[key] = (rank(r, order), r.tag)
    return [r for r in records if effective_key(r.key) is None or best[effective_key(r.key)][1] == r.tag]


@st.composite
def scenarios(
    draw, reviews: Sequence[str] = PLAIN_REVIEWS, odd: bool = True, max_events: int = 12, max_interruptions: int = 3
) -> Scenario:
    streams = draw(st.integers(1, 2))
    modes = tuple(draw(st.sampled_from(MODES)) for _ in range(streams))
    numbers = ODD_NUMBERS if odd else st.just(7)
    emitted = EMITTED_AT if odd else st.just(1_700_000_000_000)
    cursors = ODD_CURSORS if odd else CURSORS

    def record(stream: int, tag: str) -> Rec:
        review = draw(st.sampled_from(reviews))
        return Rec(stream, tag, draw(KEYS), review, draw(numbers), draw(emitted), draw(cursors))

    previous = tuple(record(s, f"p{i}-s{s}") for s in range(streams) for i in range(draw(st.integers(0, 2))))
    body: list[Event] = []
    count = 0
    for _ in range(draw(st.integers(0, max_events))):
        kind = draw(st.sampled_from(["record", "record", "record", "state"]))
        stream = draw(st.integers(0, streams - 1))
        if kind == "record":
            body.append(record(stream, f"t{count}"))
            count += 1
        else:
            body.append(StateMsg(-1, draw(st.sampled_from(["STREAM", "STREAM", "GLOBAL"])), stream))
    # Each stream's COMPLETE comes after its last record, somewhere before the end.
    for stream in range(streams):
        last = max((i for i, e in enumerate(body) if isinstance(e, Rec) and e.stream == stream), default=-1)
        body.insert(draw(st.integers(last + 1, len(body))), Complete(stream))
    script = tuple(StateMsg(pos, e.kind, e.stream) if isinstance(e, StateMsg) else e for pos, e in enumerate(body))
    interruptions = tuple(
        draw(
            st.lists(
                st.one_of(
                    st.tuples(st.just("stop"), st.integers(0, max_events + streams)),
                    st.tuples(st.just("enospc"), st.sampled_from([1, 1, 2, 3])),
                ),
                max_size=max_interruptions,
            )
        )
    )
    return Scenario(modes, previous, script, interruptions)


# ---- the messages, as the platform writes them ---------------------------------------------------


def stream_name(index: int) -> str:
    return f"s{index}"


def line(event: Event) -> bytes:
    if isinstance(event, Rec):
        record: dict[str, Any] = {"stream": stream_name(event.stream), "data": event.data()}
        if event.emitted_at is not MISSING:
            record["emitted_at"] = event.emitted_at
        # The standard encoder: it writes integers past 64 bits and lone surrogates (as escapes).
        return json.dumps({"type": "RECORD", "record": record}).encode()
    if isinstance(event, StateMsg):
        if event.kind == "GLOBAL":
            state = {"type": "GLOBAL", "global": {"shared_state": {"pos": event.pos}, "stream_states": []}}
        else:
            state = {
                "type": "STREAM",
                "stream": {
                    "stream_descriptor": {"name": stream_name(event.stream)},
                    "stream_state": {"pos": event.pos},
                },
            }
        return json.dumps({"type": "STATE", "state": state}).encode()
    return json.dumps(
        {
            "type": "TRACE",
            "trace": {
                "type": "STREAM_STATUS",
                "emitted_at": 1_700_000_000_000,
                "stream_status": {"stream_descriptor": {"name": stream_name(event.stream)}, "status": "COMPLETE"},
            },
        }
    ).encode()


def echoed_position(message: dict) -> int:
    state = message["state"]
    blob = state["global"]["shared_state"] if state.get("type") == "GLOBAL" else state["stream"]["stream_state"]
    return blob["pos"]


def catalog_for(modes: Sequence[str], generation: int):
    streams = []
    for index, mode in enumerate(modes):
        truncate = mode.startswith("truncate_")
        streams.append(
            {
                "stream": {
                    "name": stream_name(index),
                    "json_schema": SCHEMA,
                    "supported_sync_modes": ["full_refresh", "incremental"],
                },
                "sync_mode": "incremental",
                "destination_sync_mode": {"truncate_append": "append", "truncate_dedup": "append_dedup"}.get(
                    mode, mode
                ),
                "primary_key": [["id"]],
                "cursor_field": ["c"],
                "sync_id": 100 + generation,
                "generation_id": generation,
                "minimum_generation_id": generation if truncate else 0,
            }
        )
    return catalog_from_json({"streams": streams}, "of the scenario")


# ---- the store, watched and failed on purpose -------------------------------------------------------


@dataclass
class CommitLog:
    """What the sink committed during one attempt (appended once the commit has returned)."""

    fail_at: int | None = None  # this call number raises a full disk instead of committing
    calls: int = 0
    failed: bool = False
    rows: set = field(default_factory=set)  # (stream name, seq within the attempt)
    items: list = field(default_factory=list)  # (stream name, seq, cache key, ok, cached)
    entry_keys: set = field(default_factory=set)  # cache entries committed
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextlib.contextmanager
def watched_commits(log: CommitLog) -> Iterator[CommitLog]:
    real = DuckDBSink.commit

    def commit(self, batches, entries, completes=()):
        entries = list(entries)
        with log.lock:
            log.calls += 1
            call = log.calls
        if log.fail_at is not None and call == log.fail_at:
            log.failed = True
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, batches, entries, completes)
        with log.lock:
            for plan, items in batches:
                for item in items:
                    log.rows.add((plan.name, item.seq))
                    result = item.result
                    log.items.append(
                        (
                            plan.name,
                            item.seq,
                            getattr(item, "key", None),
                            result is not None and result.ok,
                            result is not None and result.cached,
                        )
                    )
            log.entry_keys.update(key for key, _, _ in entries)

    with mock.patch.object(DuckDBSink, "commit", commit):
        yield log


def read_rows(path: Path, chat: bool) -> dict[str, list[dict]] | None:
    """Every stream table and staging table of the output, as rows."""
    if not path.exists():
        return None
    extra = ", _mistral_answer, _mistral_error, _mistral_cached" if chat else ""
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
            ).fetchall()
        ]
        out = {}
        for table in tables:
            if table.startswith(("s", STAGING_PREFIX)):
                cursor = con.execute(f'SELECT tag, id, review{extra} FROM "{table}"')
                names = [d[0] for d in cursor.description]
                out[table] = [dict(zip(names, row, strict=False)) for row in cursor.fetchall()]
        return out
    finally:
        con.close()


# ---- the runner and its checks ------------------------------------------------------------------------


def note(what: str) -> None:
    """Counts what a generated run went through, in hypothesis' statistics (outside a test: nothing)."""
    if currently_in_test_context():
        event(what)


class InvariantBroken(AssertionError):
    pass


@dataclass
class Attempt:
    number: int
    start: int
    end: int
    interruption: tuple[str, int] | None
    emitted: list[int] = field(default_factory=list)
    error: BaseException | None = None
    log: CommitLog = field(default_factory=CommitLog)
    paid: int = 0  # 200 answers of the chat route during the attempt (and until the next one starts)


class SyncRun:
    """Runs a scenario's previous sync, then its attempts, checking the invariants as it goes."""

    def __init__(
        self, scenario: Scenario, workdir: Path, config: dict, *, chat: bool = False, emulator: Any = None
    ) -> None:
        self.scenario = scenario
        self.path = workdir / "out.duckdb"
        self.config = {**config, "output": {"type": "duckdb", "path": str(self.path)}}
        self.chat = chat
        self.emulator = emulator
        self.script = scenario.script
        self.covered_to = 0  # the script position just after the last STATE emitted
        self.swapped: set[int] = set()  # streams whose COMPLETE must have been applied
        self.given_complete: set[int] = set()  # streams whose COMPLETE some attempt was given
        self.sent: Counter = Counter()  # tag -> attempts whose input held the record
        self.attempts: list[Attempt] = []
        self.done = False
        self.answers: dict[str, Any] = {}  # review -> the one answer it may have
        self.records = {r.tag: r for r in scenario.previous}
        self.records.update({e.tag: e for e in self.script if isinstance(e, Rec)})
        self.order = {r.tag: i - len(scenario.previous) for i, r in enumerate(scenario.previous)}
        self.order.update({e.tag: pos for pos, e in enumerate(self.script) if isinstance(e, Rec)})

    def fail(self, text: str) -> None:
        attempts = "\n".join(
            f"  attempt {a.number}: input [{a.start}, {a.end}) interruption={a.interruption} "
            f"emitted={a.emitted} error={type(a.error).__name__ if a.error else None}: "
            f"{str(getattr(a.error, 'message', a.error) or '')[:160]}"
            for a in self.attempts
        )
        raise InvariantBroken(f"{text}\nscenario:\n{self.scenario.describe()}\nattempts:\n{attempts}")

    # -- the previous sync: generation 1, complete, no interruption
    def run_previous(self) -> None:
        events: list[Event] = [*self.scenario.previous, *(Complete(s) for s in range(len(self.scenario.modes)))]
        try:
            list(
                write_messages(
                    self.config, catalog_for(self.scenario.modes, 1), InputParser().parse([line(e) for e in events])
                )
            )
        except Exception as error:  # noqa: BLE001 - nothing was interrupted: any failure is the product's
            self.fail(f"the previous sync (no interruption) failed with {type(error).__name__}: {error}")

    def _paid_so_far(self) -> int:
        if self.emulator is None:
            return 0
        return int(self.emulator.stats()["routes"].get(CHAT_ROUTE, {}).get("200", 0))

    # -- one attempt of this sync
    def run_attempt(self, interruption: tuple[str, int] | None) -> Attempt:
        start = self.covered_to
        end = len(self.script)
        if interruption is not None and interruption[0] == "stop":
            end = min(end, start + interruption[1])
        attempt = Attempt(len(self.attempts) + 1, start, end, interruption)
        if interruption is not None and interruption[0] == "enospc":
            attempt.log.fail_at = interruption[1]
        self.attempts.append(attempt)
        events = self.script[start:end]
        # Where each record of this input lands: its stream's seq within the attempt.
        seqs: Counter = Counter()
        seq_of: dict[int, tuple[str, int]] = {}
        # What each STATE reports (destinationStats.recordCount), as Airbyte's destinations count: a
        # STREAM state, its stream's records since a STATE last covered it; a GLOBAL one, every stream's.
        uncounted: Counter = Counter()
        self.record_counts: dict[int, int] = {}
        for pos in range(start, end):
            event = self.script[pos]
            if isinstance(event, Rec):
                seq_of[pos] = (stream_name(event.stream), seqs[event.stream])
                seqs[event.stream] += 1
                uncounted[event.stream] += 1
                self.sent[event.tag] += 1
            elif isinstance(event, Complete):
                self.given_complete.add(event.stream)
            elif isinstance(event, StateMsg):
                covered = [event.stream] if event.kind == "STREAM" else list(uncounted)
                self.record_counts[pos] = sum(uncounted.pop(stream, 0) for stream in covered)
        input_states = [pos for pos in range(start, end) if isinstance(self.script[pos], StateMsg)]
        paid_before = self._paid_so_far()
        if self.attempts[:-1]:
            self.attempts[-2].paid = paid_before - self.attempts[-2].paid
        attempt.paid = paid_before  # finished into a count when the next attempt starts (or at the end)
        with watched_commits(attempt.log) as log:
            try:
                for message in write_messages(
                    self.config,
                    catalog_for(self.scenario.modes, GENERATION),
                    InputParser().parse([line(e) for e in events]),
                ):
                    self._on_state(attempt, message, input_states, seq_of, log)
            except InvariantBroken:
                raise
            except Exception as error:  # noqa: BLE001 - judged below
                attempt.error = error
        self._judge_outcome(attempt, input_states)
        if attempt.error is not None:
            note("an attempt failed: " + ("the disk filled up" if attempt.log.failed else "the API failed"))
        elif end < len(self.script):
            note("an attempt ended early: the source failed")
        if self.attempts[:-1] and attempt.emitted:
            note("a replay emitted STATEs")
        if attempt.emitted:
            self.covered_to = attempt.emitted[-1] + 1
        for pos in range(0, self.covered_to):
            if isinstance(self.script[pos], Complete):
                self.swapped.add(self.script[pos].stream)
        if attempt.error is None:
            for event in events:
                if isinstance(event, Complete):
                    self.swapped.add(event.stream)
            if end == len(self.script):
                self.done = True
        self.check_output(max(self.covered_to, end if attempt.error is None else 0))
        if self.chat:
            self._check_paid_once(attempt)
        return attempt

    def finish(self) -> None:
        if self.attempts:
            self.attempts[-1].paid = self._paid_so_far() - self.attempts[-1].paid

    def _on_state(self, attempt: Attempt, message: dict, input_states: list[int], seq_of, log: CommitLog) -> None:
        if message.get("type") != "STATE":
            self.fail(f"the destination emitted a message that is not a STATE: {str(message)[:200]}")
        pos = echoed_position(message)
        index = len(attempt.emitted)
        if index >= len(input_states) or input_states[index] != pos:
            self.fail(
                f"attempt {attempt.number} emitted the STATE at {pos} out of order: it received STATEs at "
                f"{input_states} and had emitted {attempt.emitted}"
            )
        attempt.emitted.append(pos)
        count = message["state"].get("destinationStats", {}).get("recordCount")
        if count != self.record_counts[pos]:
            self.fail(
                f"the STATE at {pos} reports recordCount {count}, but it covers {self.record_counts[pos]} records"
            )
        with log.lock:
            missing = [p for p in range(attempt.start, pos) if p in seq_of and seq_of[p] not in log.rows]
        if missing:
            self.fail(f"attempt {attempt.number} emitted the STATE at {pos} before committing the records at {missing}")

    def _judge_outcome(self, attempt: Attempt, input_states: list[int]) -> None:
        error = attempt.error
        if error is None:
            if attempt.log.failed:
                self.fail(
                    f"attempt {attempt.number}: the store failed (no space left) on commit {attempt.log.fail_at}, "
                    "yet the sync ended as a success"
                )
            if attempt.emitted != input_states:
                self.fail(
                    f"attempt {attempt.number} ended as a success after emitting {attempt.emitted} of the STATEs "
                    f"{input_states}"
                )
            return
        if not isinstance(error, AirbyteTracedException):
            self.fail(
                f"attempt {attempt.number} failed with {type(error).__name__}: {error!r}, not an AirbyteTracedException"
            )
        kind = getattr(error.failure_type, "value", error.failure_type)
        message = error.message or ""
        if attempt.log.failed and str(self.path) in message and "full" in message:
            expected = "transient_error"
        elif self.chat and "Mistral API" in message:
            expected = "transient_error"
        else:
            self.fail(
                f"attempt {attempt.number} failed without a cause it was given (full disk on commit "
                f"{attempt.log.fail_at}: {attempt.log.failed}): {kind}: {message!r}"
            )
        if kind != expected:
            self.fail(f"attempt {attempt.number} failed as {kind}, not {expected}: {message!r}")

    # -- the output against the model
    def check_output(self, limit: int) -> None:
        tables = read_rows(self.path, self.chat) or {}
        for stream, mode in enumerate(self.scenario.modes):
            name = stream_name(stream)
            previous = [r for r in self.scenario.previous if r.stream == stream]
            covered = [e for e in self.script[:limit] if isinstance(e, Rec) and e.stream == stream]
            visible = tables.get(name)
            if visible is None:
                self.fail(f"table {name} is gone")
            dedup = mode in DEDUP_MODES
            if mode not in STAGED_MODES:
                self._expect(name, visible, previous, covered, dedup)
                continue
            staging = tables.get(STAGING_PREFIX + name)
            # The previous table as its own sync left it: under dedup, one row per key (its newest record).
            held_before = newest_per_key(previous) if dedup else previous
            previous_whole = Counter(r["tag"] for r in visible) == Counter(r.tag for r in held_before)
            if not previous_whole and stream not in self.given_complete:
                self.fail(
                    f"{mode} stream {name} no longer holds the previous table {sorted(r.tag for r in held_before)} "
                    f"but {sorted(r['tag'] for r in visible)}, though no attempt was given its COMPLETE status"
                )
            if stream in self.swapped or not previous_whole:
                leftovers = [r["tag"] for r in visible if r["tag"] in {p.tag for p in previous}]
                if leftovers:
                    self.fail(
                        f"{mode} stream {name} holds rows of the previous generation {leftovers} beside this one's "
                        f"(COMPLETE applied: {stream in self.swapped})"
                    )
                self._expect(name, visible, [], covered, dedup)
            else:
                self._expect(STAGING_PREFIX + name, staging or [], [], covered, dedup)
        if self.chat:
            self._check_answers(tables)

    def _expect(self, table: str, rows: list[dict], base: list[Rec], covered: list[Rec], dedup: bool) -> None:
        counts = Counter(r["tag"] for r in rows)
        allowed = {r.tag: 1 for r in base}
        for tag, times in self.sent.items():
            allowed[tag] = allowed.get(tag, 0) + times
        for tag, count in counts.items():
            if tag not in allowed:
                self.fail(f"{table} holds a row no record of the scenario sent (tag {tag!r})")
            if count > allowed[tag]:
                self.fail(f"{table} holds record {tag} {count} times, but it was sent only {allowed[tag]} times")
        for row in rows:
            record = self.records[row["tag"]]
            if row["review"] != scrubbed(record.review):
                self.fail(f"{table}: the row of {row['tag']} holds another record's review {row['review']!r}")
        if not dedup:
            lost = [r.tag for r in base + covered if counts[r.tag] < 1]
            if lost:
                self.fail(f"{table} lost records its STATEs covered (or that a successful attempt was given): {lost}")
            return
        by_key: dict[int, list[dict]] = {}
        for row in rows:
            record = self.records[row["tag"]]
            key = effective_key(record.key)
            if row["id"] != key:
                self.fail(f"{table}: the row of {row['tag']} has id {row['id']!r}, its record's key is {record.key!r}")
            if key is not None:
                by_key.setdefault(key, []).append(row)
        twice = {key: [r["tag"] for r in found] for key, found in by_key.items() if len(found) > 1}
        if twice:
            self.fail(f"append_dedup table {table} holds keys more than once: {twice}")
        newest: dict[int, Rec] = {}
        for record in base + covered:
            key = effective_key(record.key)
            if key is None:
                if counts[record.tag] < 1:
                    self.fail(f"{table} lost the keyless record {record.tag} (each must be a row of its own)")
            elif key not in newest or self._rank(record) > self._rank(newest[key]):
                newest[key] = record
        for key, record in newest.items():
            if key not in by_key:
                self.fail(f"{table} lost key {key}: its newest covered version is {record.tag}")
            held = by_key[key][0]["tag"]
            if self._rank(self.records[held]) < self._rank(record):
                self.fail(f"{table} holds {held} for key {key}, older than {record.tag} which a STATE covered")

    def _rank(self, record: Rec) -> tuple:
        return rank(record, self.order[record.tag])

    def _check_answers(self, tables: dict[str, list[dict]]) -> None:
        for table, rows in tables.items():
            for row in rows:
                answered, failed = row["_mistral_answer"] is not None, row["_mistral_error"] is not None
                if answered == failed:
                    self.fail(
                        f"{table}: the row of {row['tag']} has answer={row['_mistral_answer']!r} and "
                        f"error={row['_mistral_error']!r}: a row needs exactly one of them"
                    )
                if not (row["review"] or "").strip() and not failed:
                    self.fail(f"{table}: the row of {row['tag']} has a blank prompt but no error")
                if answered:
                    known = self.answers.setdefault(row["review"], row["_mistral_answer"])
                    if known != row["_mistral_answer"]:
                        self.fail(
                            f"{table}: the prompt {row['review']!r} has two answers, {known!r} and "
                            f"{row['_mistral_answer']!r}: a cached answer is not the one paid for"
                        )

    def _check_paid_once(self, attempt: Attempt) -> None:
        earlier = set().union(*(a.log.entry_keys for a in self.attempts[:-1]))
        fresh = Counter(key for _, _, key, ok, cached in attempt.log.items if ok and not cached)
        again = sorted(k[:8] for k in fresh if k in earlier)
        if again:
            self.fail(
                f"attempt {attempt.number} paid again for answers committed to the cache by an earlier attempt: {again}"
            )
        twice = sorted(k[:8] for k, n in fresh.items() if n > 1)
        if twice:
            self.fail(f"attempt {attempt.number} committed two fresh answers for one prompt: {twice}")

    def check_paid_total(self) -> None:
        """The emulator's 200 answers for chat, over every attempt, stay within one per distinct prompt
        plus the answers a failed attempt received but never committed (in flight when it failed)."""
        distinct = len({e.review for e in self.script if isinstance(e, Rec) and e.review.strip()})
        lost = sum(max(0, a.paid - len(a.log.entry_keys)) for a in self.attempts if a.error is not None)
        total = sum(a.paid for a in self.attempts)
        note(
            f"answers paid over the attempts: {'more than' if total > distinct else 'at most'} one per distinct prompt"
        )
        if lost:
            note("a failed attempt left paid answers uncommitted")
        if total > distinct + lost:
            self.fail(
                f"the API answered {total} chat requests over the attempts ({[a.paid for a in self.attempts]}), "
                f"more than the {distinct} distinct prompts plus the {lost} answers failed attempts left uncommitted"
            )
