"""Pagination follows each endpoint's own rules to the last page, and no further."""

from datetime import UTC, datetime
from unittest import TestCase

from airbyte_cdk.test.entrypoint_wrapper import read
from airbyte_cdk.test.mock_http import HttpMocker

from source_mistral.source import SourceMistral
from unit_tests.source.mistral_responses import (
    CONFIG,
    agent,
    batch_job,
    catalog,
    file_item,
    files_page,
    json_response,
    mock_estimate,
    request,
)


def _source(config=CONFIG):
    return SourceMistral(config=config)


class PaginationTest(TestCase):
    @HttpMocker()
    def test_pagination_files_walks_zero_based_pages_until_a_short_page(self, http_mocker: HttpMocker) -> None:
        http = http_mocker
        config = {**CONFIG, "page_size": 2}
        items = [file_item(i, 1_700_000_000 - i) for i in range(5)]
        mock_estimate(http, "files", 5)
        for page in range(3):
            http.get(
                request("files", include_total="true", page=page, page_size=2),
                json_response(files_page(items[page * 2 : page * 2 + 2], total=5)),
            )
        output = read(_source(config), config, catalog("files"))
        ids = [r.record.data["id"] for r in output.records]
        assert ids == [i["id"] for i in items], f"all five files in API order, got {ids}"

    @HttpMocker()
    def test_pagination_batch_jobs_asks_oldest_first_from_page_zero(self, http_mocker: HttpMocker) -> None:
        http = http_mocker
        # A start ten days back: one 30-day window, so the pages of that one window are under test.
        start = int(datetime.now(UTC).timestamp()) - 10 * 86_400
        after = datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        config = {**CONFIG, "page_size": 3, "start_date": after}
        jobs = [batch_job(i, start + i) for i in range(3)]
        mock_estimate(http, "batch/jobs", 4)
        http.get(
            request("batch/jobs", order_by="created", page=0, page_size=3, created_after=after),
            json_response({"data": jobs, "object": "list", "total": 4}),
        )
        http.get(
            request("batch/jobs", order_by="created", page=1, page_size=3, created_after=after),
            json_response({"data": [batch_job(3, start + 3)], "object": "list", "total": 4}),
        )
        output = read(_source(config), config, catalog("batch_jobs"))
        assert [r.record.data["id"] for r in output.records] == ["job-0", "job-1", "job-2", "job-3"]

    @HttpMocker()
    def test_pagination_agents_follows_next_page_token_until_null(self, http_mocker: HttpMocker) -> None:
        http = http_mocker
        config = {**CONFIG, "page_size": 2}
        http.get(
            request("agents/pages", page_size=2),
            json_response(
                {
                    "object": "list",
                    "data": [agent(0, "2025-02-01T00:00:00Z"), agent(1, "2025-02-02T00:00:00Z")],
                    "next_page_token": "tok-1",
                }
            ),
        )
        http.get(
            request("agents/pages", page_size=2, page_token="tok-1"),
            json_response({"object": "list", "data": [agent(2, "2025-02-03T00:00:00Z")], "next_page_token": None}),
        )
        output = read(_source(config), config, catalog("agents"))
        assert [r.record.data["id"] for r in output.records] == ["ag_0000", "ag_0001", "ag_0002"]
