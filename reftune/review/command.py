"""`reftune review PATH [PATH ...]`: load the inputs, start the app on a local port, print its URL
(or, for a team, one private link per reviewer).

Every action is journaled the moment it is made, so Ctrl-C loses nothing: the same command again
shows the same state.
"""
from __future__ import annotations

import argparse
import logging
import secrets
import socket
import threading
import time
import webbrowser

from reftune.errors import ReftuneError
from reftune.listening import bind, is_loopback, url_of

LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]
WILDCARDS = ("0.0.0.0", "::", "[::]")  # every address: a link names this machine instead


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from reftune.tasks import STYLES, TASKS

    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="samples files (eval/sample/offline-st), an RL run's rollouts.jsonl, ReFT-format "
                             ".json/.jsonl training files, or annotate output folders")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; anything else warns)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default 0: a free one)")
    parser.add_argument("--no-browser", action="store_true", help="print the URL, do not open a browser")
    parser.add_argument("--task", choices=sorted(TASKS),
                        help="the task that reads the answers (default: the run's config.yaml, else the ids' prefix)")
    parser.add_argument("--style", choices=STYLES,
                        help="the CoT style (default: config.yaml, else guessed from the CoTs)")
    parser.add_argument("--include-failing", action="store_true",
                        help="Export also the kept CoTs that fail the check (a wrong answer or step, a program "
                             "that fails or runs too long); by default they are left out and counted")
    team = parser.add_argument_group("reviewing as a team")
    team.add_argument("--reviewers", metavar="NAME,NAME",
                      help="review as a team: one private link per reviewer (a secret token); every route needs "
                           "one. Required for a --host other than loopback")
    team.add_argument("--overlap", type=int, metavar="K",
                      help="give each record to K reviewers (default 1: the records are shared out); 2 or more "
                           "measures agreement")
    team.add_argument("--adjudicator", metavar="NAME",
                      help="the reviewer who settles disagreements (a Disagreements page); their decision wins")
    team.add_argument("--export-majority", action="store_true",
                      help="Export takes the majority decision of a disagreement nobody settled "
                           "(default: leaves it out)")
    add_helper_arguments(parser.add_argument_group("a model that helps"))


def add_helper_arguments(helpers) -> None:
    """--suggest-* (a model suggests CoTs) and --verifier (a verifier orders the records)."""
    helpers.add_argument("--suggest-endpoint", metavar="URL",
                         help="an OpenAI-compatible API (reftune serve, vLLM, a llama.cpp server), e.g. "
                              "http://127.0.0.1:8000/v1: a question's Suggest button asks it for CoTs")
    helpers.add_argument("--suggest-model", metavar="NAME",
                         help="the model the endpoint serves (default: the one its /models lists)")
    helpers.add_argument("--suggest-k", type=int, metavar="K", help="CoTs per Suggest (default 4)")
    helpers.add_argument("--suggest-prompt-file", metavar="FILE",
                         help="few-shot examples put before each question, as annotate's --prompt-file (default: "
                              "the task's built-in ones); an empty file asks with the task's prompt alone, as a "
                              "model reftune trained reads it")
    helpers.add_argument("--verifier", metavar="FOLDER",
                         help="a verifier (the best/ folder of a `reftune verifier` run) that scores every sample "
                              "in the background: the list's sort 'most doubtful first' shows the records it trusts "
                              "least first")


def check_port(port: int) -> None:
    """Refused before the inputs are read: the socket layer would raise OverflowError for it."""
    if not 0 <= port <= 65535:
        raise ReftuneError(f"--port must be in 0..65535 (0 picks a free port), got {port}")


def host_warning(host: str) -> str | None:
    """The warning a non-loopback address gets (only a team's private links open the app there)."""
    if is_loopback(host):
        return None
    return (f"review: warning: listening on {host}, not loopback: the links travel as plain HTTP, so use "
            f"them on a network you trust")


def check_host(host: str, reviewers: str | None) -> None:
    """Refused before the inputs are read: on another address, anyone who reaches it could read and
    change the review unless every request carries a reviewer's token."""
    if not is_loopback(host) and reviewers is None:
        raise ReftuneError(f"--host {host} is not loopback: give --reviewers NAME,NAME so that each person gets a "
                           f"private link (or leave --host out to review alone on this machine)")


def reviewer_links(url: str, host: str, tokens: dict[str, str]) -> list[str]:
    """One line per reviewer: their private link (a wildcard address names this machine instead)."""
    if host in WILDCARDS:
        url = f"http://{socket.gethostname()}:{url.rsplit(':', 1)[1]}"
    return [f"review: {name}: {url}?token={token}" for token, name in tokens.items()]


def hide_tokens_in_logs() -> None:
    """A team's host sees each request in uvicorn's access log; a token never shows there (the app
    removes it from the request first; this filter hides any that a log line still holds)."""
    from reftune.review.access import HideTokens

    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, HideTokens) for f in logger.filters):
            logger.addFilter(HideTokens())
    logging.getLogger("uvicorn.access").setLevel(logging.INFO)


def command_review(args: argparse.Namespace) -> int:
    from reftune.review.records import open_collection
    from reftune.review.session import Session
    from reftune.review.team import team_from_options

    # 1. check the options (the suggest endpoint answers, the verifier is one), read the inputs' first
    # rows (all of a small one) and replay their journals; the verifier scores the records in the
    # background from then on, those read later as they come
    check_port(args.port)
    team = team_from_options(args.reviewers, args.overlap, args.adjudicator, args.export_majority)
    check_host(args.host, args.reviewers)
    suggester = open_suggester(args)
    if args.verifier:
        from reftune.review.doubt import check_verifier

        check_verifier(args.verifier)
    print("review: reading the inputs (a training file's CoTs are checked now; programs run in the sandbox)",
          flush=True)
    try:
        collection = open_collection(args.paths, task=args.task, style=args.style)
    except KeyboardInterrupt:
        print("review: stopped while reading the inputs; nothing was written")
        return 130
    session = Session(collection, args.include_failing, team, suggester, start_scoring(args.verifier, collection))
    describe_inputs(session)

    # 2. listen, print the URL (a team: each reviewer's link), read the rest of a big input in the
    # background while the app shows the first pages, serve until Ctrl-C
    tokens = {secrets.token_urlsafe(24): name for name in team.reviewers} if args.reviewers else None
    serve_session(session, args, tokens)
    print(f"review: stopped; run the same command to continue where you left off ({progress_line(session)})")
    return 0


def open_suggester(args: argparse.Namespace):
    """The suggester for --suggest-endpoint, once the endpoint has answered; None without one."""
    if args.suggest_endpoint is None:
        if args.suggest_model is not None or args.suggest_k is not None or args.suggest_prompt_file is not None:
            raise ReftuneError("--suggest-model, --suggest-k and --suggest-prompt-file go with --suggest-endpoint URL "
                               "(the API to ask)")
        return None
    from reftune.review.suggest import DEFAULT_K, open_suggester as open_endpoint

    print(f"review: asking {args.suggest_endpoint} which models it serves", flush=True)
    return open_endpoint(args.suggest_endpoint, args.suggest_model,
                         DEFAULT_K if args.suggest_k is None else args.suggest_k, args.suggest_prompt_file)


def start_scoring(folder: str | None, collection):
    """The verifier's scores, filled in by a thread of their own (None without --verifier)."""
    if folder is None:
        return None
    from reftune.review.doubt import VerifierScores

    return VerifierScores(folder, collection).start()


def describe_inputs(session) -> None:
    for source in session.collection.sources:
        print(f"review: {source.label}: {source.kind}, task {source.choice.task} ({source.choice.style}, "
              f"from {source.choice.origin}), journal {source.journal_path}")
    if session.loading is None:
        print(read_line(session))
    if session.team.shared:
        team = session.team
        print(f"review: {len(team.reviewers)} reviewers, each record to {team.overlap}"
              + (f", {team.adjudicator} settles disagreements" if team.adjudicator else ""))
    if session.suggester:
        print(f"review: Suggest asks {session.suggester.source} for {session.suggester.k} CoTs")
    if session.verifier:
        later = " (and those read later, as they come)" if session.loading is not None else ""
        print(f"review: the verifier {session.verifier.folder} scores {session.verifier.progress().total} "
              f"records{later} in the background; sort the list by 'most doubtful first'")
    for problem in session.state.problems:
        print(f"review: warning: {problem}")
    for folder in session.state.read_only_sources():
        print(f"review: warning: {folder} is not writable: you can look, but no action can be saved")


def read_the_rest(session) -> None:
    """Started once the server's own imports are done, so that they do not wait on the reading."""
    if session.loading is None:
        return
    started, known = time.perf_counter(), len(session.state.problems)
    print(f"review: {len(session.records)} records read; reading the rest in the background (until it is done, "
          f"the pages say how far it is, and Export waits)", flush=True)

    def done():
        lines = [read_line(session, time.perf_counter() - started)]
        lines += [f"review: warning: {problem}" for problem in session.state.problems[known:]]
        print("\n".join(lines), flush=True)
    session.read_in_background(done)


def read_line(session, seconds: float | None = None) -> str:
    """What reading the inputs gave (and how long the background part took)."""
    if session.reading_failed:
        return f"review: warning: reading the inputs stopped ({session.reading_failed}); restart the review"
    took = f" (the rest in {seconds:.1f} s)" if seconds is not None else ""
    return (f"review: {len(session.records)} records{took}, "
            f"{sum(1 for r in session.records if r.error)} unreadable rows shown as errors")


def serve_session(session, args: argparse.Namespace, tokens: dict[str, str] | None) -> None:
    """Bind, print where to open the app, serve until Ctrl-C (uvicorn finishes the requests in hand,
    then passes the Ctrl-C on)."""
    import uvicorn

    from reftune.review.app import create_app

    warning = host_warning(args.host)
    if warning:
        print(warning)
    sock = bind(args.host, args.port)
    url = url_of(sock, args.host)
    app = create_app(session, secrets.token_urlsafe(24), None if warning else LOOPBACK_NAMES, tokens)
    if tokens:
        print("review: send each reviewer their own link (it signs them in; without one every page is refused):")
        print("\n".join(reviewer_links(url, args.host, tokens)), flush=True)
    else:
        print(f"review: open {url}  (Ctrl-C stops; every action is already saved)", flush=True)
        if not args.no_browser:
            threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    if tokens:
        hide_tokens_in_logs()
    read_the_rest(session)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


def progress_line(session) -> str:
    """How far the review came: one count, or one per reviewer."""
    from reftune.review.pages import progress

    if not session.team.shared:
        return f"reviewed {session.state.reviewed_count(session.team.reviewers[0])} of {len(session.records)}"
    counts = [(name, progress(session, name)) for name in session.team.reviewers]
    return ", ".join(f"{name} reviewed {c['reviewed']} of {c['total']}" for name, c in counts)
