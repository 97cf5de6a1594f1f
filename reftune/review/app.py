"""The review app's routes. Each one parses the request, calls a plain function (pages, session,
export) and renders a template. Changes only through POST with the session's token; records are
addressed by index or id, never by a path. Every request acts for one reviewer (see access)."""
from __future__ import annotations

import json
import secrets
from pathlib import Path

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from reftune.errors import ReftuneError
from reftune.review import export, pages
from reftune.review.access import REVIEWER_KEY, ReviewerAccess
from reftune.review.checking import TRAINING_ORIGINS, check_cot
from reftune.review.journal import DECISIONS, Event
from reftune.review.query import Query
from reftune.review.records import Record
from reftune.review.session import NotYours, Session, UnknownRecord
from reftune.review.state import EditConflict
from reftune.review.suggest import SuggestFailed
from reftune.review.team import decision_of

HERE = Path(__file__).parent
TOKEN_HEADER = "X-Reftune-Token"
ACTIONS = ("accept", "reject", "flag", "unflag", "note")
MAX_COT = 100_000  # characters an edit may hold
MAX_NOTE = 2_000
# nothing but the app's own files may run or load: a payload that escaped the escaping still cannot
SECURITY_HEADERS = {"content-security-policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
                    "x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}


class Guard:
    """ASGI middleware: a POST without the session's token gets 403; every response gets the
    security headers."""

    def __init__(self, app, token: str):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                extra = [(key.encode(), value.encode()) for key, value in SECURITY_HEADERS.items()]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        if scope["method"] not in ("GET", "HEAD"):
            given = dict(scope["headers"]).get(TOKEN_HEADER.lower().encode(), b"")
            if not secrets.compare_digest(given, self.token.encode()):
                response = HTMLResponse("forbidden: this change needs the page's session token (reload the page)", 403,
                                        headers={"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"})
                return await response(scope, receive, with_headers)
        await self.app(scope, receive, with_headers)


def templates() -> Jinja2Templates:
    """Autoescaped: model text is never marked safe (only Pygments' output, which escapes it)."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
    environment.filters["answer"] = pages.format_answer
    environment.filters["decision"] = decision_of
    environment.filters["program"] = pages.highlighted
    return Jinja2Templates(env=environment)


def render(request: Request, name: str, context: dict, status: int = 200) -> Response:
    state, reviewer = request.app.state, reviewer_of(request)
    team = state.session.team
    return state.views.TemplateResponse(request, name, {**context, "token": state.token, "reviewer": reviewer,
                                                        "team": team, "adjudicating": reviewer == team.adjudicator},
                                        status_code=status)


def session_of(request: Request) -> Session:
    return request.app.state.session


def reviewer_of(request: Request) -> str:
    return request.scope[REVIEWER_KEY]


def record_of(request: Request) -> Record:
    """The URL's record, if it is in the reviewer's queue."""
    session = session_of(request)
    return session.check_queue(session.record(request.path_params["index"]), reviewer_of(request))


def sample_of(request: Request) -> tuple[Record, int]:
    record, number = record_of(request), request.path_params["sample"]
    if not 0 <= number < len(session_of(request).state.samples(record)):
        raise UnknownRecord(f"record {record.index} has no sample {number}")
    return record, number


def list_records(request: Request) -> Response:
    """Sync: the header's count of failing kept samples may run programs, so it runs in the thread pool."""
    context = pages.list_page(session_of(request), Query.from_params(request.query_params), reviewer_of(request))
    fragment = request.headers.get("HX-Target") == "list"
    return render(request, "_list.html" if fragment else "list.html", context)


def show_record(request: Request) -> Response:
    """Sync: the first view of a question runs its programs, so it runs in the thread pool."""
    query = Query.from_params(request.query_params)
    context = pages.record_page(session_of(request), record_of(request), query, reviewer_of(request))
    return render(request, "record.html", context)


def show_sample(request: Request) -> Response:
    (record, number), session, reviewer = sample_of(request), session_of(request), reviewer_of(request)
    return render(request, "_sample.html", {"view": pages.sample_view(session, record, number, reviewer),
                                            "progress": pages.progress(session, reviewer), "oob": True})


def edit_form(request: Request) -> Response:
    """The editor starts from the latest saved version (another process's included)."""
    record, number = sample_of(request)
    session_of(request).state.refresh()
    view = pages.sample_view(session_of(request), record, number, reviewer_of(request))
    return render(request, "_edit.html", {"view": view, "text": view.text, "base": view.review.version})


def check_text(request: Request, record: Record, number: int | None, text: str):
    """The check of an edit of sample `number`, or of a CoT written by hand (number None): checked as
    a completion, so it must state its answer."""
    samples = session_of(request).state.samples(record)
    training = number is not None and samples[number].origin in TRAINING_ORIGINS
    return check_cot(session_of(request).collection.tasks[record.source], text, record.gold, training)


async def check(request: Request) -> Response:
    (record, number), form = sample_of(request), await request.form()
    verdict = await run_in_threadpool(check_text, request, record, number, edited_text(form))
    return render(request, "_verdict.html", {"verdict": verdict})


async def save_edit(request: Request) -> Response:
    """Re-check the text and journal it; an edit based on an older version is refused with the
    newer text shown (the reviewer's own text stays in the editor)."""
    (record, number), form = sample_of(request), await request.form()
    text = edited_text(form)
    verdict = await run_in_threadpool(check_text, request, record, number, text)
    event = Event("edit", record.id, number, text=text, base=parse_int(form.get("base"), "base"),
                  status=verdict.status, answer=verdict.answer, detail=verdict.detail, reviewer=reviewer_of(request))
    try:
        await run_in_threadpool(session_of(request).state.act, record, number, event)
    except EditConflict as conflict:
        view = pages.sample_view(session_of(request), record, number, reviewer_of(request))
        return render(request, "_edit.html", {"view": view, "text": text, "base": conflict.current.version,
                                              "conflict": conflict.current}, status=409)
    return await run_in_threadpool(show_sample, request)


async def act(request: Request) -> Response:
    (record, number), form = sample_of(request), await request.form()
    action = request.path_params["action"]
    if action not in ACTIONS:
        raise HTTPException(404, f"unknown action {action[:40]!r}: use one of {', '.join(ACTIONS)}")
    note = str(form.get("note", ""))[:MAX_NOTE]
    event = Event(action, record.id, number, text=note, reviewer=reviewer_of(request))
    await run_in_threadpool(session_of(request).state.act, record, number, event)
    return await run_in_threadpool(show_sample, request)


def write_form(request: Request) -> Response:
    """The editor for a new CoT of the question, typed by hand or from a suggestion ("cancel" gives
    the closed form back)."""
    record, session = record_of(request), session_of(request)
    suggestion = pages.held_suggestion(session, record, request.query_params.get("suggestion"))
    closed = request.query_params.get("closed") is not None
    return render(request, "_write.html", {**pages.write_form(session, record, suggestion), "closed": closed})


async def check_written(request: Request) -> Response:
    record, form = record_of(request), await request.form()
    verdict = await run_in_threadpool(check_text, request, record, None, edited_text(form))
    return render(request, "_verdict.html", {"verdict": verdict})


async def save_written(request: Request) -> Response:
    """Check the new CoT and journal it as the question's next sample, kept by its writer; the
    answer is its card, with the editor closed again."""
    record, form = record_of(request), await request.form()
    text = edited_text(form)
    if not text.strip():
        raise ReftuneError("the CoT is empty: type the steps (or the program) first")
    suggestion = pages.held_suggestion(session_of(request), record, form.get("suggestion"))
    source = "" if suggestion is None else suggestion.source + ("" if text == suggestion.text else ", edited")
    verdict = await run_in_threadpool(check_text, request, record, None, text)
    event = Event("write", record.id, 0, text=text, status=verdict.status, answer=verdict.answer,
                  detail=verdict.detail, reviewer=reviewer_of(request), source=source)
    journaled = await run_in_threadpool(session_of(request).state.act, record, 0, event)
    return await run_in_threadpool(render_written, request, record, journaled.sample, suggestion)


def render_written(request: Request, record: Record, number: int, suggestion=None) -> Response:
    """The new sample's card, the editor closed again, and a kept suggestion's card marked as kept."""
    session, reviewer = session_of(request), reviewer_of(request)
    return render(request, "_written.html", {"view": pages.sample_view(session, record, number, reviewer),
                                             "progress": pages.progress(session, reviewer), "oob": True,
                                             **pages.write_form(session, record), "closed": True,
                                             "kept": suggestion})


def suggest(request: Request) -> Response:
    """Sync: asks the model (seconds) and checks its CoTs (programs in the sandbox) on a worker thread."""
    return render(request, "_suggestions.html", pages.suggestions_page(session_of(request), record_of(request)))


async def keep_suggestion(request: Request) -> Response:
    """A suggested CoT kept as it is: journaled as the question's next sample, with its source."""
    record = record_of(request)
    suggestion = pages.held_suggestion(session_of(request), record, request.path_params["suggestion"])
    verdict = suggestion.verdict
    event = Event("write", record.id, 0, text=suggestion.text, status=verdict.status, answer=verdict.answer,
                  detail=verdict.detail, reviewer=reviewer_of(request), source=suggestion.source)
    journaled = await run_in_threadpool(session_of(request).state.act, record, 0, event)
    return await run_in_threadpool(render_written, request, record, journaled.sample, suggestion)


def show_disagreements(request: Request) -> Response:
    """The adjudicator's page: every sample the reviewers decided differently."""
    adjudicator_of(request)
    return render(request, "disagreements.html", pages.disagreements_page(session_of(request), reviewer_of(request)))


async def settle(request: Request) -> Response:
    """The adjudicator's decision on a sample: journaled, and it wins over the reviewers'."""
    reviewer, form = adjudicator_of(request), await request.form()
    session = session_of(request)
    record = session.record(request.path_params["index"])
    number, decision = request.path_params["sample"], str(form.get("decision", ""))
    if decision not in DECISIONS.values():
        raise ReftuneError(f"decision {decision[:40]!r}: settle to accepted or rejected")
    if not 0 <= number < len(session.state.samples(record)):
        raise UnknownRecord(f"record {record.index} has no sample {number}")
    await run_in_threadpool(session.state.act, record, number, Event("settle", record.id, number, text=decision,
                                                                      reviewer=reviewer))
    found = await run_in_threadpool(pages.disagreement_of, session, record, number)
    return render(request, "_disagreement.html", {"item": found})


def adjudicator_of(request: Request) -> str:
    """The reviewer, if they are the adjudicator; NotYours for anyone else."""
    team, reviewer = session_of(request).team, reviewer_of(request)
    if team.adjudicator is None:
        raise NotYours("this review has no adjudicator: start it with --reviewers ... --adjudicator NAME")
    if reviewer != team.adjudicator:
        raise NotYours(f"only the adjudicator ({team.adjudicator}) settles disagreements")
    return reviewer


def show_stats(request: Request) -> Response:
    session = session_of(request)
    source = source_number(request.query_params.get("source", "0"), session)
    return render(request, "stats.html", pages.stats_page(session, source, reviewer_of(request)))


def show_compare(request: Request) -> Response:
    session, params, reviewer = session_of(request), request.query_params, reviewer_of(request)
    if len(session.collection.sources) < 2:
        return render(request, "compare.html", {"comparison": None, "progress": pages.progress(session, reviewer)})
    a, b = source_number(params.get("a", "0"), session), source_number(params.get("b", "1"), session)
    return render(request, "compare.html", pages.compare_page(session, a, b, params.get("id"), reviewer))


def export_all(request: Request) -> Response:
    return render(request, "_export.html", {"counts": session_of(request).export()})


def download(request: Request) -> Response:
    """What Export writes for one input, as a download (sync: the checks may run programs)."""
    session = session_of(request)
    source = source_number(str(request.path_params["source"]), session)
    kind = request.path_params["kind"]
    if kind == "training.json":
        rows = export.training_rows(session.kept_samples(source), session.collection.tasks[source],
                                    session.include_failing)
        return Response(json.dumps(rows, indent=1, ensure_ascii=False), media_type="application/json")
    if kind == "decisions.csv":
        return Response(export.csv_text(session.decisions(source)), media_type="text/csv")
    raise HTTPException(404, "the downloads are training.json and decisions.csv")


def error_page(request: Request, message: str, status: int) -> Response:
    """A whole page; for an htmx request, one line shown in the page's message area instead."""
    if request.headers.get("HX-Request"):
        response = render(request, "_error.html", {"message": message}, status=status)
        response.headers.update({"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"})
        return response
    return render(request, "error.html", {"message": message, "status": status}, status=status)


async def user_error(request: Request, exc: ReftuneError) -> Response:
    statuses = {UnknownRecord: 404, NotYours: 403, SuggestFailed: 502}  # 502: the model's endpoint failed
    status = next((code for kind, code in statuses.items() if isinstance(exc, kind)), 400)
    return error_page(request, str(exc), status)


async def http_error(request: Request, exc: HTTPException) -> Response:
    return error_page(request, str(exc.detail), exc.status_code)


SAMPLE = "/record/{index:int}/sample/{sample:int}"
WRITE = "/record/{index:int}/write"
ROUTES = [
    Route("/", list_records), Route("/record/{index:int}", show_record), Route(SAMPLE, show_sample),
    Route(SAMPLE + "/edit", edit_form), Route(SAMPLE + "/edit", save_edit, methods=["POST"]),
    Route(SAMPLE + "/check", check, methods=["POST"]), Route(SAMPLE + "/settle", settle, methods=["POST"]),
    Route(SAMPLE + "/{action}", act, methods=["POST"]),
    Route(WRITE, write_form), Route(WRITE, save_written, methods=["POST"]),
    Route(WRITE + "/check", check_written, methods=["POST"]), Route("/disagreements", show_disagreements),
    Route("/record/{index:int}/suggest", suggest, methods=["POST"]),
    Route("/record/{index:int}/suggestion/{suggestion}", keep_suggestion, methods=["POST"]),
    Route("/stats", show_stats), Route("/compare", show_compare), Route("/export", export_all, methods=["POST"]),
    Route("/export/{source:int}/{kind}", download),
    Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
]


def create_app(session: Session, token: str, allowed_hosts: list[str] | None = None,
               reviewers: dict[str, str] | None = None) -> Starlette:
    """The app over a loaded session. token: the one every change must carry (no other site's page
    can read it). allowed_hosts: Host headers to accept (the loopback names when bound to loopback,
    so that another site's page cannot reach it through DNS rebinding). reviewers: secret -> name,
    each reviewer's private token; None for one person on loopback."""
    middleware = [Middleware(Guard, token=token), Middleware(ReviewerAccess, tokens=reviewers)]
    if allowed_hosts:
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))
    app = Starlette(routes=ROUTES, middleware=middleware,
                    exception_handlers={ReftuneError: user_error, HTTPException: http_error})
    app.state.session, app.state.token, app.state.views = session, token, templates()
    return app


def edited_text(form) -> str:
    text = form.get("text")
    if not isinstance(text, str):
        raise ReftuneError("the form has no text field: send the CoT as 'text'")
    if len(text) > MAX_COT:
        raise ReftuneError(f"the CoT is longer than {MAX_COT} characters: shorten it")
    return text.replace("\r\n", "\n")


def parse_int(value, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ReftuneError(f"{name} must be a whole number, got {str(value)[:40]!r}") from None


def source_number(value: str, session: Session) -> int:
    number = parse_int(value, "source")
    if not 0 <= number < len(session.collection.sources):
        raise UnknownRecord(f"no input {number}: this review has inputs 0 to {len(session.collection.sources) - 1}")
    return number
