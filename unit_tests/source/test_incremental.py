"""Incremental reads: what state the source keeps and what it asks for next time."""

from datetime import UTC, datetime, timedelta
from unittest import TestCase

from airbyte_cdk.models import SyncMode
from airbyte_cdk.test.entrypoint_wrapper import read
from airbyte_cdk.test.mock_http import HttpMocker
from airbyte_cdk.test.state_builder import StateBuilder

from source_mistral.source import SourceMistral
from unit_tests.source.mistral_responses import (
    CONFIG,
    batch_job,
    catalog,
    file_item,
    files_page,
    json_response,
    mock_estimate,
    request,
)

NOW = int(datetime.now(UTC).timestamp())


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class IncrementalTest(TestCase):
    @HttpMocker()
    def test_incremental_batch_jobs_asks_again_for_eight_days_before_the_state(self, http_mocker: HttpMocker) -> None:
        """A job that was RUNNING at the last sync was created at most 7 days (the API's maximum
        timeout_hours) before it, so asking from state - 8 days always reads it again."""
        cursor = NOW - 3600
        expected_after = _iso(cursor - int(timedelta(days=8).total_seconds()))
        state = StateBuilder().with_stream_state("batch_jobs", {"created_at": _iso(cursor)}).build()
        mock_estimate(http_mocker, "batch/jobs", 2)
        http_mocker.get(
            request("batch/jobs", order_by="created", page=0, page_size=100, created_after=expected_after),
            json_response(
                {
                    "data": [batch_job(1, cursor - 60, status="SUCCESS"), batch_job(2, cursor + 60, "RUNNING")],
                    "object": "list",
                    "total": 2,
                }
            ),
        )
        output = read(
            SourceMistral(config=CONFIG, state=state), CONFIG, catalog("batch_jobs", SyncMode.incremental), state
        )
        assert [r.record.data["status"] for r in output.records] == ["SUCCESS", "RUNNING"], (
            "the job that finished since is read again"
        )
        assert output.most_recent_state.stream_state.created_at >= _iso(cursor), output.most_recent_state

    @HttpMocker()
    def test_incremental_files_emits_only_files_newer_than_the_state(self, http_mocker: HttpMocker) -> None:
        cursor = NOW - 1000
        state = StateBuilder().with_stream_state("files", {"created_at": str(cursor)}).build()
        mock_estimate(http_mocker, "files", 4)
        items = [
            file_item(0, cursor + 500),
            file_item(1, cursor + 10),
            file_item(2, cursor - 10),
            file_item(3, cursor - 500),
        ]
        http_mocker.get(
            request("files", include_total="true", page=0, page_size=100), json_response(files_page(items, total=4))
        )
        output = read(SourceMistral(config=CONFIG, state=state), CONFIG, catalog("files", SyncMode.incremental), state)
        assert [r.record.data["id"] for r in output.records] == [items[0]["id"], items[1]["id"]]
        assert int(output.most_recent_state.stream_state.created_at) == cursor + 500
