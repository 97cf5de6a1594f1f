"""The review journal: an append-only JSONL file beside the data (`<data file>.review.jsonl`), one
reviewer action per line. The state of a review is the replay of its journal; the data file itself
is never rewritten.

>>> review = apply_event(SampleReview(), Event("edit", "gsm8k_1", 0, text="x = 2", base=0, status="correct"))
>>> review.version, review.edited, apply_event(review, Event("accept", "gsm8k_1", 0)).decision
(1, True, 'accepted')
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

EVENTS = ("edit", "accept", "reject", "flag", "unflag", "note")
DECISIONS = {"accept": "accepted", "reject": "rejected"}


@dataclass(frozen=True)
class Event:
    """One reviewer action: one line of the journal."""

    event: str              # one of EVENTS
    id: str                 # the record's id in its data file
    sample: int             # which of the record's samples (0-based)
    time: str = ""          # ISO 8601 UTC, set when written
    text: str = ""          # edit: the new CoT; note: the note ("" clears it)
    base: int = 0           # edit: the version the editor started from (an older one conflicts)
    status: str = ""        # edit: the re-check's verdict of the new text
    answer: object = None   # edit: the answer the re-check extracted
    detail: str = ""        # edit: the re-check's one line

    @classmethod
    def from_json(cls, row: dict) -> Event:
        """Raises ValueError for a line that is not an event."""
        if not isinstance(row, dict) or row.get("event") not in EVENTS:
            raise ValueError(f"not a review event: {str(row)[:80]}")
        known = {key: row[key] for key in cls.__dataclass_fields__ if key in row}
        event = cls(**known)
        if not isinstance(event.sample, int) or not isinstance(event.text, str) or not isinstance(event.base, int):
            raise ValueError(f"an event with a bad sample, text or base: {str(row)[:80]}")
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
    """The review after one more event (pure: replay and live actions share it)."""
    if event.event == "edit":
        return replace(review, text=event.text, version=review.version + 1, status=event.status,
                       answer=event.answer, detail=event.detail)
    if event.event in DECISIONS:
        return replace(review, decision=DECISIONS[event.event])
    if event.event in ("flag", "unflag"):
        return replace(review, flagged=event.event == "flag")
    return replace(review, note=event.text)


def replay(lines: list[str]) -> tuple[dict[tuple[str, int], SampleReview], list[str]]:
    """(id, sample) -> review after every readable line; and one problem per line that is not an
    event (a line cut short by a crash, say), which replay skips."""
    reviews: dict[tuple[str, int], SampleReview] = {}
    problems = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = Event.from_json(json.loads(line))
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            problems.append(f"line {number}: {exc}")
            continue
        key = (event.id, event.sample)
        reviews[key] = apply_event(reviews.get(key, SampleReview()), event)
    return reviews, problems


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Journal:
    """One data file's journal. Each event is written and synced before the action is confirmed."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def writable(self) -> bool:
        if self.path.exists():
            return os.access(self.path, os.W_OK)
        return os.access(self.path.parent, os.W_OK)

    def lines(self) -> list[str]:
        if not self.path.exists():
            return []
        return self.path.read_text(encoding="utf-8", errors="replace").splitlines()

    def append(self, event: Event) -> Event:
        """Write the event with the time, as one line; a line left unfinished by a crash before it
        is closed off first, so that it cannot swallow this one."""
        event = replace(event, time=now())
        line = json.dumps(asdict(event), ensure_ascii=False) + "\n"
        with open(self.path, "a+b") as out:
            if out.tell() > 0:
                out.seek(-1, os.SEEK_END)
                if out.read(1) != b"\n":
                    line = "\n" + line
            out.write(line.encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())
        return event
