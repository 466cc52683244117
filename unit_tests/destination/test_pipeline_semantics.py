"""The pipeline's contract: STATE only after everything before it is committed, input order kept
per stream, on_error honoured, memory bounded by a byte window."""

import asyncio
import threading
import time
from types import SimpleNamespace

import orjson
import pytest
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_mistral.destination import from_airbyte
from destination_mistral.enrich.results import Result, failed
from destination_mistral.protocol.messages import Record
from destination_mistral.settings import parse_config
from destination_mistral.sinks.plans import plan_stream
from destination_mistral.sync.pipeline import Pipeline
from destination_mistral.sync.reader import END_OF_INPUT, ByteWindow, RecordIn
from tests.support.builders import configured_stream, record, review, state


class RecordingSink:
    location = "memory"

    def __init__(self, log):
        self.log = log

    def start(self, plans):
        pass

    def lookup(self, keys):
        return {}

    def commit(self, batches, entries, completes=()):
        self.log.append(("commit", [i.record["id"] for _, rows in batches for i in rows]))

    def finish(self):
        self.log.append(("finish",))

    def close(self):
        pass


class GatedEnricher:
    """Each record's answer waits until the test opens its gate."""

    kind = "chat"

    def __init__(self):
        self.gates = {}
        self.fail = set()

    def gate(self, i):
        return self.gates.setdefault(i, asyncio.Event())

    def prepare(self, data):
        return SimpleNamespace(key=f"k{data['id']}", id=data["id"], cut=False)

    async def run(self, item):
        await self.gate(item.id).wait()
        return (
            failed("HTTP 422: the input is refused", kind="input")
            if item.id in self.fail
            else Result(value="ok", model="m")
        )

    def count_tokens(self, items):
        pass

    def submit(self, item):
        return asyncio.get_running_loop().create_task(self.run(item))

    def flush(self):
        pass


def plan(tmp_path):
    config = parse_config(
        {
            "api_key": "k-123456",
            "base_url": "http://127.0.0.1:9",
            "output": {"type": "duckdb", "path": str(tmp_path / "x.duckdb")},
            "enrichment": {"mode": "chat", "prompt_template": "{{ review }}"},
        }
    )
    return plan_stream(configured_stream(mode="append"), config)


async def until(condition, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def start(pipeline):
    return asyncio.create_task(pipeline.run())


def put(pipeline, message):
    for converted in from_airbyte([message]):
        if isinstance(converted, Record):
            pipeline.inbox.put_nowait(RecordIn(converted, 10))
        else:
            pipeline.inbox.put_nowait(converted)


def position(state_message):
    return state_message["state"]["stream"]["stream_state"]["position"]


def test_state_emitted_only_after_commit(tmp_path):
    async def scenario():
        log = []
        enricher = GatedEnricher()
        p = plan(tmp_path)
        pipeline = Pipeline(
            [p],
            {p.key: enricher},
            RecordingSink(log),
            None,
            lambda m: log.append(("state", position(m))),
            cache_enabled=False,
        )
        task = start(pipeline)
        for message in [
            record(review(1)),
            record(review(2)),
            state({"position": 2}),
            record(review(3)),
            state({"position": 3}),
        ]:
            put(pipeline, message)
        enricher.gate(2).set()
        await asyncio.sleep(0.2)
        assert not any(e[0] == "state" for e in log), "no STATE may leave while record 1 is not committed"
        enricher.gate(1).set()
        await until(lambda: ("state", 2) in log)
        assert log.index(("commit", [1, 2])) < log.index(("state", 2)), (
            "STATE must follow the commit of the records before it"
        )
        assert ("state", 3) not in log
        enricher.gate(3).set()
        pipeline.inbox.put_nowait(END_OF_INPUT)
        await task
        assert log[-2:] == [("finish",), ("state", 3)] or ("state", 3) in log
        committed = [i for e in log if e[0] == "commit" for i in e[1]]
        assert committed == [1, 2, 3], "every record exactly once, in input order"
        destination_stats = pipeline.counters
        assert destination_stats.states_out == 2

    asyncio.run(scenario())


def test_on_error_fail_commits_what_came_before_and_stops(tmp_path):
    async def scenario():
        log = []
        enricher = GatedEnricher()
        enricher.fail.add(3)
        p = plan(tmp_path)
        pipeline = Pipeline(
            [p],
            {p.key: enricher},
            RecordingSink(log),
            None,
            lambda m: log.append(("state", position(m))),
            on_error="fail",
            cache_enabled=False,
        )
        task = start(pipeline)
        for message in [
            record(review(1)),
            record(review(2)),
            state({"position": 2}),
            record(review(3)),
            record(review(4)),
            state({"position": 4}),
        ]:
            put(pipeline, message)
        for i in (4, 3, 2, 1):
            enricher.gate(i).set()
        with pytest.raises(AirbyteTracedException, match="could not be enriched") as caught:
            await task
        assert "the input is refused" in caught.value.message
        committed = [i for e in log if e[0] == "commit" for i in e[1]]
        assert committed == [1, 2], "records before the failed one are committed, the failed one and later are not"
        assert ("state", 2) in log and ("state", 4) not in log

    asyncio.run(scenario())


def test_on_error_record_writes_the_record_with_its_error(tmp_path):
    async def scenario():
        log = []
        enricher = GatedEnricher()
        enricher.fail.add(1)
        p = plan(tmp_path)
        sink = RecordingSink(log)
        seen = []
        sink.commit = lambda batches, entries, completes=(): seen.extend(i.result for _, rows in batches for i in rows)
        pipeline = Pipeline([p], {p.key: enricher}, sink, None, lambda m: None, cache_enabled=False)
        task = start(pipeline)
        put(pipeline, record(review(1)))
        enricher.gate(1).set()
        pipeline.inbox.put_nowait(END_OF_INPUT)
        await task
        assert len(seen) == 1 and seen[0].error == "HTTP 422: the input is refused" and seen[0].value is None
        assert pipeline.counters.failed == 1

    asyncio.run(scenario())


def test_identical_inputs_in_one_sync_are_sent_once(tmp_path):
    async def scenario():
        calls = []

        class Counting(GatedEnricher):
            def prepare(self, data):
                return SimpleNamespace(key="same", id=data["id"], cut=False)

            async def run(self, item):
                calls.append(item.id)
                return Result(value="ok", model="m")

        p = plan(tmp_path)
        pipeline = Pipeline([p], {p.key: Counting()}, RecordingSink([]), None, lambda m: None, cache_enabled=False)
        task = start(pipeline)
        for i in range(5):
            put(pipeline, record(review(i)))
        pipeline.inbox.put_nowait(END_OF_INPUT)
        await task
        assert len(calls) == 1, "one request for five identical inputs"
        assert pipeline.counters.cached == 4

    asyncio.run(scenario())


def _acquiring(window: ByteWindow, amount: int) -> tuple[threading.Thread, threading.Event]:
    """A reader thread acquiring `amount`, and the event it sets once it has."""
    acquired = threading.Event()
    thread = threading.Thread(target=lambda: (window.acquire(amount), acquired.set()))
    thread.start()
    return thread, acquired


def test_byte_window_blocks_the_reader_until_commit_releases_bytes():
    window = ByteWindow(100)
    assert window.acquire(60)
    thread, acquired = _acquiring(window, 60)
    assert not acquired.wait(0.2), "the reader must wait while the window is full"
    window.release(60)
    assert acquired.wait(2), "released bytes must let the reader continue"
    thread.join()
    window.release(60)
    assert window.acquire(1000), "a record larger than the window passes alone once the window has drained"


def test_a_full_byte_window_resumes_reading_only_once_an_eighth_of_it_is_free():
    """Records then arrive in runs and are prepared back to back, instead of one per commit."""
    window = ByteWindow(800)
    assert window.acquire(700)
    thread, acquired = _acquiring(window, 150)
    window.release(100)  # 600 + 150 fits the window, but less than an eighth of it is free
    assert not acquired.wait(0.2), "reading must wait until an eighth of the window is free"
    window.release(50)  # 550 + 150 = 700: an eighth is free
    assert acquired.wait(2)
    thread.join()
    assert window.used == 700


def test_a_chunked_record_costs_the_window_at_least_its_chunks_texts_and_vectors():
    from destination_mistral.enrich.chunking import Chunker
    from destination_mistral.sinks.schema import CHUNKED_EMBEDDINGS, StreamPlan
    from destination_mistral.sync.reader import DICT_OVERHEAD_FACTOR, cost_of

    plan = StreamPlan("docs", None, "append", [], [], CHUNKED_EMBEDDINGS, embedding_dim=1024)
    # Four bytes a character (an emoji makes Python keep the whole text so), chunks of few characters.
    body = " ".join(f"😀{i % 97}" for i in range(6000))
    data = {"id": 1, "body": body}
    chunks = Chunker(len, 400, 40).split(body)  # a token a character: the most chunks a text can make
    held = sum(4 * len(chunk.text) + 4 * 1024 for chunk in chunks)
    json_size = len(orjson.dumps(data))
    assert cost_of(plan, data) >= json_size * DICT_OVERHEAD_FACTOR + held
