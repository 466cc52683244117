"""What a read checkpoints while it runs: batch jobs are read in 30-day windows of created_at, each a
partition whose completion moves the state, so a read stopped partway resumes where it stopped.
Files are a data feed: newest first, the read stops at the state."""

from datetime import UTC, datetime
from unittest import TestCase

from airbyte_cdk.models import SyncMode, Type
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

DAY = 86_400
# Whole seconds, so that the windows' bounds written in the requests are exact.
START = int(datetime.now(UTC).timestamp()) - 40 * DAY


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _jobs_page(jobs, total):
    return json_response({"data": jobs, "object": "list", "total": total})


class BatchJobWindowsTest(TestCase):
    @HttpMocker()
    def test_batch_jobs_each_window_is_asked_from_its_start_and_its_pages_stop_past_its_end(
        self, http_mocker: HttpMocker
    ) -> None:
        config = {**CONFIG, "start_date": _iso(START), "page_size": 3, "num_workers": 1}
        early, late, next_window = START + DAY, START + 29 * DAY, START + 31 * DAY
        mock_estimate(http_mocker, "batch/jobs", 3)
        # The first window's one page ends with a job of the next window: no second page is asked.
        http_mocker.get(
            request("batch/jobs", order_by="created", page=0, page_size=3, created_after=_iso(START)),
            _jobs_page([batch_job(1, early), batch_job(2, late), batch_job(3, next_window)], total=3),
        )
        http_mocker.get(
            request("batch/jobs", order_by="created", page=0, page_size=3, created_after=_iso(START + 30 * DAY)),
            _jobs_page([batch_job(3, next_window)], total=1),
        )
        output = read(SourceMistral(config=config), config, catalog("batch_jobs", SyncMode.incremental))
        assert not output.errors, output.get_formatted_error_message()
        ids = [r.record.data["id"] for r in output.records]
        assert sorted(ids) == ["job-1", "job-2", "job-3"], f"each job once, in the window it was created in: {ids}"

    @HttpMocker()
    def test_batch_jobs_state_moves_when_a_window_completes_before_the_read_ends(self, http_mocker: HttpMocker) -> None:
        config = {**CONFIG, "start_date": _iso(START), "num_workers": 1}
        mock_estimate(http_mocker, "batch/jobs", 2)
        http_mocker.get(
            request("batch/jobs", order_by="created", page=0, page_size=100, created_after=_iso(START)),
            _jobs_page([batch_job(1, START + DAY), batch_job(2, START + 35 * DAY)], total=2),
        )
        http_mocker.get(
            request("batch/jobs", order_by="created", page=0, page_size=100, created_after=_iso(START + 30 * DAY)),
            _jobs_page([batch_job(2, START + 35 * DAY)], total=1),
        )
        output = read(SourceMistral(config=config), config, catalog("batch_jobs", SyncMode.incremental))
        kinds = [
            (m.type, m.record.data["id"] if m.type == Type.RECORD else None)
            for m in output._messages
            if m.type in (Type.RECORD, Type.STATE)
        ]
        first_job, second_job = kinds.index((Type.RECORD, "job-1")), kinds.index((Type.RECORD, "job-2"))
        assert (Type.STATE, None) in kinds[first_job:second_job], f"a STATE between the two windows: {kinds}"
        assert kinds[-1] == (Type.STATE, None)

    @HttpMocker()
    def test_batch_jobs_resume_from_a_state_asks_only_from_eight_days_before_it(self, http_mocker: HttpMocker) -> None:
        cursor = START + 35 * DAY
        state = StateBuilder().with_stream_state("batch_jobs", {"created_at": _iso(cursor)}).build()
        mock_estimate(http_mocker, "batch/jobs", 1)
        http_mocker.get(
            request("batch/jobs", order_by="created", page=0, page_size=100, created_after=_iso(cursor - 8 * DAY)),
            _jobs_page([batch_job(2, cursor)], total=1),
        )
        output = read(
            SourceMistral(config=CONFIG, state=state), CONFIG, catalog("batch_jobs", SyncMode.incremental), state
        )
        assert [r.record.data["id"] for r in output.records] == ["job-2"]


class FilesDataFeedTest(TestCase):
    @HttpMocker()
    def test_incremental_files_stop_paging_at_the_first_page_reaching_files_older_than_the_state(
        self, http_mocker: HttpMocker
    ) -> None:
        cursor = START
        state = StateBuilder().with_stream_state("files", {"created_at": str(cursor)}).build()
        config = {**CONFIG, "page_size": 2}
        mock_estimate(http_mocker, "files", 8)
        newest_first = [file_item(i, cursor + 350 - 100 * i) for i in range(8)]
        # Page 2 ends on a file older than the state: page 3 is never asked (HttpMocker fails on an
        # unexpected request).
        for page in (0, 1, 2):
            http_mocker.get(
                request("files", include_total="true", page=page, page_size=2),
                json_response(files_page(newest_first[page * 2 : page * 2 + 2], total=8)),
            )
        output = read(SourceMistral(config=config, state=state), config, catalog("files", SyncMode.incremental), state)
        assert not output.errors, output.get_formatted_error_message()
        assert [r.record.data["id"] for r in output.records] == [f["id"] for f in newest_first[:4]], (
            "only the files newer than the state"
        )
        assert int(output.most_recent_state.stream_state.created_at) == cursor + 350
