"""The jobs web page's routes, on a job source in memory: what each page shows,
that every stored text is shown as text, the headers, and the errors."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID, uuid4

import pytest
from web_fakes import (
    HOSTILE,
    T0,
    FakeSource,
    at,
    attempt_row,
    event,
    job_row,
)

from segue.protocol.messages import JobStatus
from segue.store.listing import Cursor
from segue.web.app import WebApp, filter_text
from segue.web.reader import JobRecord

Query = dict[str, list[str]]


def app(source: FakeSource) -> WebApp:
    return WebApp(source, clock=lambda: at(10))


def get(web: WebApp, url: str, **environ: str) -> tuple[str, dict[str, str], str]:
    """Call the WSGI application as a server would; status, headers and body."""
    parts = urlsplit(url)
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    body: Iterable[bytes] = web(
        {"REQUEST_METHOD": "GET", "PATH_INFO": parts.path, "QUERY_STRING": parts.query, **environ},
        start_response,
    )
    return seen["status"], seen["headers"], b"".join(body).decode()


def summary(n: int, **overrides: Any) -> dict[str, Any]:
    return job_row(UUID(int=n), created_at=at(-n), **overrides)


def test_the_root_leads_to_the_jobs_list() -> None:
    status, headers, _ = get(app(FakeSource()), "/")

    assert status.startswith("303")
    assert headers["Location"] == "/jobs"


def test_the_list_shows_each_job_with_a_link_to_its_page() -> None:
    source = FakeSource(summaries=[summary(1), summary(2, status="failed")])

    status, headers, body = get(app(source), "/jobs")

    assert status == "200 OK"
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert f'href="/jobs/{UUID(int=1)}"' in body
    assert body.count('class="job"') == 2
    assert 'data-status="failed"' in body


def test_stored_texts_are_escaped_everywhere_in_the_list() -> None:
    hostile = summary(
        1,
        reference=HOSTILE,
        owner=HOSTILE,
        error={"kind": HOSTILE, "message": HOSTILE},
        current_step=HOSTILE,
    )

    _, _, body = get(app(FakeSource(summaries=[hostile])), f"/jobs?workflow={HOSTILE}")

    assert "<script>alert" not in body
    assert "<b>x</b>" not in body
    assert body.count(html.escape(HOSTILE, quote=True)) >= 4


def test_the_form_filters_reach_the_source_as_typed() -> None:
    source = FakeSource()

    get(app(source), "/jobs?status=failed&status=timed_out&workflow=w&since=2h&error=boom")

    (job_filter,) = source.filters
    assert job_filter.statuses == (JobStatus.FAILED, JobStatus.TIMED_OUT)
    assert job_filter.workflow == "w"
    assert job_filter.since == at(10 - 7200)
    assert job_filter.error_text == "boom"


def test_a_full_page_links_to_the_next_one_keeping_the_filters() -> None:
    rows = [summary(n) for n in range(1, 6)]
    source = FakeSource(summaries=rows)

    _, _, body = get(app(source), "/jobs?status=running&limit=2&owner=alice")

    found = re.search(r'class="next" rel="next" href="([^"]+)"', body)
    assert found is not None
    link = html.unescape(found[1])
    query = parse_qs(urlsplit(link).query)
    assert query["status"] == ["running"]
    assert query["owner"] == ["alice"]
    assert query["limit"] == ["2"]
    assert Cursor.from_token(query["after"][0]) == Cursor(at(-2), UUID(int=2))
    _, _, following = get(app(source), link)
    assert f'href="/jobs/{UUID(int=3)}"' in following
    assert f'href="/jobs/{UUID(int=1)}"' not in following
    assert 'class="first"' in following


def test_only_the_first_page_polls_for_new_jobs() -> None:
    source = FakeSource(summaries=[summary(n) for n in range(1, 4)])

    _, _, first = get(app(source), "/jobs?limit=1")
    token = Cursor(at(-1), UUID(int=1)).token()
    _, _, second = get(app(source), f"/jobs?limit=1&after={token}")

    assert 'hx-get="/jobs/rows?limit=1"' in first
    assert "hx-trigger" not in second


def test_the_polled_rows_are_the_listing_alone() -> None:
    _, _, body = get(app(FakeSource(summaries=[summary(1)])), "/jobs/rows?status=running")

    assert body.lstrip().startswith('<section id="listing"')
    assert "<form" not in body


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("status=done", "status: &#39;done&#39; is not a job status"),
        ("since=yesterday", "since: &#39;yesterday&#39; is neither ISO 8601"),
        ("limit=5000", "limit: must be between 1 and 1000"),
        ("after=nonsense", "after: not a cursor"),
    ],
)
def test_a_filter_that_cannot_be_read_is_named_on_the_page(query: str, says: str) -> None:
    source = FakeSource(summaries=[summary(1)])

    status, _, body = get(app(source), f"/jobs?{query}")

    assert status == "400 Bad Request"
    assert says in body
    assert source.filters == []


def test_a_job_page_shows_its_parts_and_escapes_every_stored_text() -> None:
    job_id, attempt_id = uuid4(), uuid4()
    error = {"kind": HOSTILE, "message": HOSTILE, "step": "simulate", "details": HOSTILE}
    record = JobRecord(
        job_row(
            job_id,
            "failed",
            params={"note": HOSTILE},
            outputs={"x": HOSTILE},
            reference=HOSTILE,
            error=error,
        ),
        [attempt_row(attempt_id, "simulate", status="failed", error=error)],
        [
            event(1, "job_submitted", 0, workflow="energy_plan", version="1", priority=5),
            event(2, "step_started", 1, step="simulate", attempt=1, attempt_id=str(attempt_id)),
            event(3, "step_progress", 2, attempt_id=str(attempt_id), fraction=0.4, message=HOSTILE),
            event(4, "step_failed", 3, step="simulate", error=error, attempt=1),
        ],
    )

    status, headers, body = get(app(FakeSource(records={job_id: record})), f"/jobs/{job_id}")

    assert status == "200 OK"
    assert "<script>alert" not in body
    assert "<b>x</b>" not in body
    assert "&lt;b&gt;x&lt;/b&gt;" in body
    assert 'id="params"' in body
    assert "failed: " in body  # the timeline
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_chart_data_stays_inside_its_attribute() -> None:
    job_id, attempt_id = uuid4(), uuid4()
    step = "x' onmouseover='alert(1)' y=\"</figure><script>alert(1)</script>"
    record = JobRecord(
        job_row(job_id),
        [attempt_row(attempt_id, step)],
        [event(1, "step_started", 1, step=step, attempt=1, attempt_id=str(attempt_id))],
    )

    _, _, body = get(app(FakeSource(records={job_id: record})), f"/jobs/{job_id}")

    blocks = re.findall(r"data-progress-chart='([^']*)'", body)
    assert len(blocks) == 1
    assert json.loads(html.unescape(blocks[0]))["step"] == step
    assert "<script>alert" not in body


def test_a_running_job_polls_its_live_part_and_a_finished_one_does_not() -> None:
    running, done = uuid4(), uuid4()
    source = FakeSource(
        records={
            running: JobRecord(job_row(running, "running"), [], []),
            done: JobRecord(job_row(done, "succeeded", finished_at=at(8)), [], []),
        }
    )

    _, _, page = get(app(source), f"/jobs/{running}")
    _, _, fragment = get(app(source), f"/jobs/{running}/live")
    _, _, finished = get(app(source), f"/jobs/{done}/live")

    assert f'hx-get="/jobs/{running}/live"' in page
    assert fragment.lstrip().startswith('<div id="live"')
    assert 'hx-trigger="every 2s"' in fragment
    assert "hx-trigger" not in finished
    assert 'data-status="succeeded"' in finished


def test_an_unknown_job_is_not_found() -> None:
    status, _, body = get(app(FakeSource()), f"/jobs/{uuid4()}")

    assert status == "404 Not Found"
    assert "never submitted, or purged" in body


@pytest.mark.parametrize("path", ["/jobs/not-a-uuid", "/admin", "/jobs/1/2/3"])
def test_other_paths_are_not_found(path: str) -> None:
    assert get(app(FakeSource()), path)[0] == "404 Not Found"


def test_static_files_come_with_their_type_and_revalidate_by_etag() -> None:
    web = app(FakeSource())

    status, headers, body = get(web, "/static/vendor/htmx.min.js")
    again, _, empty = get(web, "/static/vendor/htmx.min.js", HTTP_IF_NONE_MATCH=headers["ETag"])

    assert status == "200 OK"
    assert headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert "htmx" in body
    assert (again, empty) == ("304 Not Modified", "")
    assert get(web, "/static/segue.css")[1]["Content-Type"] == "text/css; charset=utf-8"


@pytest.mark.parametrize(
    "name", ["../app.py", "../templates/base.html", "nope.js", "%2e%2e/app.py"]
)
def test_nothing_but_the_static_files_is_served_from_static(name: str) -> None:
    assert get(app(FakeSource()), f"/static/{name}")[0] == "404 Not Found"


def test_the_page_only_reads() -> None:
    web = app(FakeSource())

    status = web.respond("POST", "/jobs", {})

    assert status.status == "405 Method Not Allowed"


def test_an_unreachable_database_is_a_503_with_the_reason() -> None:
    status, _, body = get(app(FakeSource(down=True)), "/jobs")

    assert status == "503 Service Unavailable"
    assert "connection refused" in body


def test_the_filters_of_a_query_are_read_as_typed() -> None:
    query: Query = {"status": ["failed", "queued"], "workflow": ["w"], "limit": [""]}

    typed = filter_text(query)

    assert typed.statuses == ("failed", "queued")
    assert typed.workflow == "w"
    assert typed.limit == ""
    assert typed.since is None


def test_the_job_page_times_are_utc() -> None:
    job_id = uuid4()
    record = JobRecord(job_row(job_id), [], [])

    _, _, body = get(app(FakeSource(records={job_id: record})), f"/jobs/{job_id}")

    assert f"{T0:%Y-%m-%d %H:%M:%S} UTC" in body
