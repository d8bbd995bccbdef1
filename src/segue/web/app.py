"""The web page's WSGI application: routes, templates, static files and headers.

Routes (GET or HEAD only; the page never changes anything):

- ``/jobs``: the jobs list, with the filters of ``segue jobs list`` as a form
  (``status`` repeatable, ``workflow``, ``since``, ``until``, ``step``,
  ``error``, ``owner``, ``limit``) and a keyset ``after`` link to the next page;
  ``/jobs/rows`` is its table alone, which the first page polls.
- ``/jobs/<id>``: one job; ``/jobs/<id>/live`` is its changing part, which the
  page polls (htmx) while the job runs.
- ``/static/<name>``: the script, style sheet and vendored libraries.

Templates escape every value (Jinja2 autoescape), and the Content Security
Policy allows scripts and styles from this server only: no inline script, so
even a text that slipped through escaping could not run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode
from uuid import UUID

import structlog
from jinja2 import Environment, PackageLoader, StrictUndefined

from segue.store.list_filters import FilterError, FilterText, parse_filter
from segue.store.listing import JobPage
from segue.web.reader import JobReader, JobSource, WebDatabaseError
from segue.web.static import StaticFiles
from segue.web.views import job_detail, statuses_shown

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
Query = Mapping[str, Sequence[str]]

JOB_POLL_S = 2
LIST_POLL_S = 5
FILTER_FIELDS = ("status", "workflow", "since", "until", "step", "error", "owner", "limit")
SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)
HTML = "text/html; charset=utf-8"
_JOB_PATH = re.compile(r"/jobs/([0-9a-fA-F-]{32,36})(/live)?")


@dataclass(frozen=True, slots=True)
class Response:
    """What to answer: status line, body and the headers that go with it."""

    status: str
    body: bytes
    content_type: str = HTML
    headers: tuple[tuple[str, str], ...] = (("Cache-Control", "no-store"),)


class WebApp:
    """The WSGI application of the jobs page, reading through a :class:`JobSource`."""

    def __init__(
        self,
        source: JobSource,
        clock: Callable[[], datetime],
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._source = source
        self._clock = clock
        self._on_close = on_close
        self._static = StaticFiles.from_package()
        self._templates = Environment(
            loader=PackageLoader("segue.web", "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._templates.filters["when"] = _when
        self._log = structlog.get_logger("segue.web")

    def close(self) -> None:
        """Release what the source holds (database connections)."""
        if self._on_close is not None:
            self._on_close()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        response = self.respond(method, path, query, environ.get("HTTP_IF_NONE_MATCH"))
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            *SECURITY_HEADERS,
            *response.headers,
        ]
        start_response(response.status, headers)
        return [b"" if method == "HEAD" else response.body]

    def respond(
        self, method: str, path: str, query: Query, if_none_match: str | None = None
    ) -> Response:
        """The response to one request; never raises."""
        if method not in ("GET", "HEAD"):
            return self._message("405 Method Not Allowed", "This page only shows: GET it.")
        try:
            if path.startswith("/static/"):
                return self._static_file(path.removeprefix("/static/"), if_none_match)
            return self._route(path, query)
        except WebDatabaseError as exc:
            return self._message("503 Service Unavailable", str(exc))
        except Exception:
            self._log.exception("web_request_failed", path=path)
            return self._message("500 Internal Server Error", "Something went wrong (logged).")

    def _route(self, path: str, query: Query) -> Response:
        if path in ("", "/"):
            return Response("303 See Other", b"", headers=(("Location", "/jobs"),))
        if path in ("/jobs", "/jobs/"):
            return self._jobs(query, "jobs.html")
        if path == "/jobs/rows":
            return self._jobs(query, "jobs_listing.html")
        matched = _JOB_PATH.fullmatch(path)
        if matched is not None:
            return self._job(UUID(matched.group(1)), live=matched.group(2) is not None)
        return self._message("404 Not Found", f"Nothing here: {path}")

    def _jobs(self, query: Query, template: str) -> Response:
        typed = filter_text(query)
        problem = None
        try:
            job_filter = parse_filter(typed, self._clock())
        except FilterError as exc:
            problem, page, limit = f"Cannot filter by {exc}", JobPage([], None), typed.limit
        else:
            page, limit = self._source.jobs_page(job_filter), job_filter.limit
        pairs = filter_pairs(query)
        context: dict[str, Any] = {
            "typed": typed,
            "limit": limit or "",
            "statuses": statuses_shown(typed.statuses),
            "jobs": page.jobs,
            "problem": problem,
            "next_url": None
            if page.next is None
            else _url("/jobs", [*pairs, ("after", page.next.token())]),
            "first_url": _url("/jobs", pairs) if typed.after else None,
            "poll": problem is None and not typed.after,
            "rows_url": _url("/jobs/rows", pairs),
            "poll_s": LIST_POLL_S,
        }
        if template == "jobs.html":
            context["workflows"] = self._source.workflow_names()
        status = "200 OK" if problem is None else "400 Bad Request"
        return Response(status, self._render(template, context))

    def _job(self, job_id: UUID, *, live: bool) -> Response:
        record = self._source.job(job_id)
        if record is None:
            return self._message("404 Not Found", f"No job {job_id} (never submitted, or purged).")
        detail = job_detail(record, self._clock())
        template = "job_live.html" if live else "job.html"
        return Response("200 OK", self._render(template, {"job": detail, "poll_s": JOB_POLL_S}))

    def _static_file(self, name: str, if_none_match: str | None) -> Response:
        found = self._static.get(name)
        if found is None:
            return self._message("404 Not Found", f"No static file {name}")
        headers = (("Cache-Control", "no-cache"), ("ETag", found.etag))
        if if_none_match == found.etag:
            return Response("304 Not Modified", b"", found.content_type, headers)
        return Response("200 OK", found.body, found.content_type, headers)

    def _message(self, status: str, message: str) -> Response:
        body = self._render("message.html", {"status": status, "message": message})
        return Response(status, body)

    def _render(self, template: str, context: dict[str, Any]) -> bytes:
        return self._templates.get_template(template).render(context).encode()


def build_web_app(database_url: str, clock: Callable[[], datetime]) -> WebApp:
    """The web page on a :class:`JobReader` of ``database_url`` (no connection yet)."""
    reader = JobReader(database_url)
    return WebApp(reader, clock, on_close=reader.close)


def filter_text(query: Query) -> FilterText:
    """The filters of a query string, as typed."""

    def first(name: str) -> str | None:
        values = query.get(name)
        return values[0] if values else None

    return FilterText(
        statuses=tuple(query.get("status", ())),
        workflow=first("workflow"),
        since=first("since"),
        until=first("until"),
        step=first("step"),
        error=first("error"),
        owner=first("owner"),
        after=first("after"),
        limit=first("limit"),
    )


def filter_pairs(query: Query) -> list[tuple[str, str]]:
    """The query's non-empty filter fields (not the page), to build links with."""
    return [
        (name, value) for name in FILTER_FIELDS for value in query.get(name, ()) if value.strip()
    ]


def _url(path: str, pairs: list[tuple[str, str]]) -> str:
    return f"{path}?{urlencode(pairs)}" if pairs else path


def _when(moment: datetime | None) -> str:
    """A time as the page shows it (UTC, to the second)."""
    return "" if moment is None else f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}"
