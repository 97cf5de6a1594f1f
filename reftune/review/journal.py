"""The review journal: an append-only JSONL file beside the data (`<data file>.review.jsonl`), one
reviewer action per line, each naming its reviewer. The state of a review is the replay of its
journal; the data file itself is never rewritten.

>>> review = apply_event(SampleReview(), Event("edit", "gsm8k_1", 0, text="x = 2", base=0, status="correct"))
>>> review.version, review.edited, apply_event(review, Event("accept", "gsm8k_1", 0)).decision
(1, True, 'accepted')
>>> Event.from_json({"event": "flag", "id": "gsm8k_1", "sample": 0}).reviewer  # a line written before reviewers
'local'
"""
from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

# write: a CoT typed by hand, a new sample of the question; settle: the adjudicator's decision
EVENTS = ("edit", "accept", "reject", "flag", "unflag", "note", "write", "settle")
DECISIONS = {"accept": "accepted", "reject": "rejected"}
DEFAULT_REVIEWER = "local"  # one person's review (no --reviewers), and every line written before reviewers


@dataclass(frozen=True)
class Event:
    """One reviewer action: one line of the journal."""

    event: str              # one of EVENTS
    id: str                 # the record's id in its data file
    sample: int             # which of the record's samples (0-based; a written CoT comes after them)
    time: str = ""          # ISO 8601 UTC, set when written
    text: str = ""          # edit, write: the CoT; note: the note ("" clears it); settle: "accepted" / "rejected"
    base: int = 0           # edit: the version the editor started from (an older one conflicts)
    status: str = ""        # edit, write: the check's verdict of the text
    answer: object = None   # edit, write: the answer the check extracted
    detail: str = ""        # edit, write: the check's one line
    reviewer: str = DEFAULT_REVIEWER  # who did it
    source: str = ""        # write: where the CoT came from ("" typed by hand; a suggestion's model and endpoint)

    @classmethod
    def from_json(cls, row: dict) -> Event:
        """Raises ValueError for a line that is not an event."""
        if not isinstance(row, dict) or row.get("event") not in EVENTS:
            raise ValueError(f"not a review event: {str(row)[:80]}")
        known = {key: row[key] for key in cls.__dataclass_fields__ if key in row}
        event = cls(**known)
        if not isinstance(event.sample, int) or not isinstance(event.text, str) or not isinstance(event.base, int):
            raise ValueError(f"an event with a bad sample, text or base: {str(row)[:80]}")
        if not isinstance(event.reviewer, str) or not event.reviewer:
            raise ValueError(f"an event with a bad reviewer: {str(row)[:80]}")
        if not isinstance(event.source, str):
            raise ValueError(f"an event with a bad source: {str(row)[:80]}")
        return replace(event, id=str(event.id))


@dataclass(frozen=True)
class SampleReview:
    """What the reviewer has done to one sample so far."""

    decision: str = ""          # "accepted", "rejected", or "" (undecided)
    flagged: bool = False
    note: str = ""
    text: str | None = None     # the edited CoT; None while never edited
    version: int = 0            # edits so far: an edit must be based on the latest
    status: str = ""            # the edited text's verdict
    answer: object = None
    detail: str = ""

    @property
    def edited(self) -> bool:
        return self.text is not None


def apply_event(review: SampleReview, event: Event) -> SampleReview:
    """The review after one more event (pure: replay and live actions share it). Whoever writes a
    CoT by hand keeps it; the adjudicator's settle belongs to the sample, not to a review."""
    if event.event == "write":
        return replace(review, decision="accepted")
    if event.event == "settle":
        return review
    if event.event == "edit":
        return replace(review, text=event.text, version=review.version + 1, status=event.status,
                       answer=event.answer, detail=event.detail)
    if event.event in DECISIONS:
        return replace(review, decision=DECISIONS[event.event])
    if event.event in ("flag", "unflag"):
        return replace(review, flagged=event.event == "flag")
    return replace(review, note=event.text)


def parse_line(line: str) -> Event:
    """Raises ValueError for a line that is not an event."""
    try:
        return Event.from_json(json.loads(line))
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(str(exc)) from None


def replay(lines: list[str]) -> tuple[dict[tuple[str, str, int], SampleReview], list[str]]:
    """(reviewer, id, sample) -> review after every readable line; and one problem per line that is
    not an event (a line cut short by a crash, say), which replay skips."""
    reviews: dict[tuple[str, str, int], SampleReview] = {}
    problems = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = parse_line(line)
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
            continue
        key = (event.reviewer, event.id, event.sample)
        reviews[key] = apply_event(reviews.get(key, SampleReview()), event)
    return reviews, problems


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Journal:
    """One data file's journal, shared by every tab and every `reftune review` process on the same
    data: an action locks the file, takes in what others appended since, then appends its own
    event, written and synced before the action is confirmed."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.read_to = 0  # bytes of the file already taken in

    @property
    def writable(self) -> bool:
        if self.path.exists():
            return os.access(self.path, os.W_OK)
        return os.access(self.path.parent, os.W_OK)

    def has_news(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > self.read_to

    def read_new(self) -> list[str]:
        """The complete lines appended since the last read (every line, the first time)."""
        if not self.path.exists():
            return []
        with open(self.path, "rb") as source:
            source.seek(self.read_to)
            data = source.read()
        complete = data[:data.rfind(b"\n") + 1]
        self.read_to += len(complete)
        return complete.decode("utf-8", errors="replace").splitlines()

    @contextmanager
    def locked(self, mode: str = "a+b"):
        """The open journal, locked against other processes ("rb" to read a read-only one)."""
        with open(self.path, mode) as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield handle
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def append(self, handle, event: Event) -> Event:
        """Inside locked(), after read_new(): write the event with the time, as one line, in one
        write() to a file opened for appending (so no other writer's bytes can land inside it). A line
        left unfinished by a crash is closed off first, so that it cannot swallow this one."""
        event = replace(event, time=now())
        line = (json.dumps(asdict(event), ensure_ascii=False) + "\n").encode("utf-8")
        fd = handle.fileno()
        size = os.fstat(fd).st_size
        if size > 0 and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        written = os.write(fd, line)
        while written < len(line):  # a short write (a full disk, a signal): finish the same line
            written += os.write(fd, line[written:])
        os.fsync(fd)
        self.read_to = os.fstat(fd).st_size
        return event
