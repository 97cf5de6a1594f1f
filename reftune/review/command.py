"""`reftune review PATH [PATH ...]`: load the inputs, start the app on a local port, print its URL.

Every action is journaled the moment it is made, so Ctrl-C loses nothing: the same command again
shows the same state.
"""
from __future__ import annotations

import argparse
import secrets
import threading
import webbrowser

from reftune.errors import ReftuneError
from reftune.listening import bind, is_loopback, url_of

LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]


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


def check_port(port: int) -> None:
    """Refused before the inputs are read: the socket layer would raise OverflowError for it."""
    if not 0 <= port <= 65535:
        raise ReftuneError(f"--port must be in 0..65535 (0 picks a free port), got {port}")


def host_warning(host: str) -> str | None:
    """The warning a non-loopback address gets: the page carries the token that allows changes."""
    if is_loopback(host):
        return None
    return (f"review: warning: listening on {host}, not loopback: anyone who can reach this address can "
            f"open the app, read the data and change this review")


def command_review(args: argparse.Namespace) -> int:
    import uvicorn

    from reftune.review.app import create_app
    from reftune.review.records import load_collection
    from reftune.review.session import Session

    # 1. read the inputs and replay their journals
    check_port(args.port)
    print("review: reading the inputs (a training file's CoTs are checked now; programs run in the sandbox)",
          flush=True)
    try:
        session = Session(load_collection(args.paths, task=args.task, style=args.style), args.include_failing)
    except KeyboardInterrupt:
        print("review: stopped while reading the inputs; nothing was written")
        return 130
    for source in session.collection.sources:
        print(f"review: {source.label}: {source.kind}, task {source.choice.task} ({source.choice.style}, "
              f"from {source.choice.origin}), journal {source.journal_path}")
    print(f"review: {len(session.records)} records, "
          f"{sum(1 for r in session.records if r.error)} unreadable rows shown as errors")
    for problem in session.state.problems:
        print(f"review: warning: {problem}")
    for folder in session.state.read_only_sources():
        print(f"review: warning: {folder} is not writable: you can look, but no action can be saved")

    # 2. listen, warn about a non-loopback address, print the URL
    warning = host_warning(args.host)
    if warning:
        print(warning)
    sock = bind(args.host, args.port)
    url = url_of(sock, args.host)
    app = create_app(session, secrets.token_urlsafe(24), None if warning else LOOPBACK_NAMES)
    print(f"review: open {url}  (Ctrl-C stops; every action is already saved)", flush=True)
    if not args.no_browser:
        threading.Timer(0.5, webbrowser.open, args=(url,)).start()

    # 3. serve until Ctrl-C; uvicorn finishes the requests in hand, then passes the Ctrl-C on
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    print(f"review: stopped; run the same command to continue where you left off "
          f"(reviewed {session.state.reviewed_count()} of {len(session.records)})")
    return 0
