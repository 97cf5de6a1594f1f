"""The live review of a session: every reviewer's review of every sample, the CoTs written by hand and
the adjudicator's settlements, replayed from the journals at start and kept in step with them as the
reviewers act. A lock orders the actions of all tabs and reviewers; the journal's file lock orders
those of several `reftune review` processes on the same data."""
from __future__ import annotations

import threading
from dataclasses import replace

from reftune.errors import ReftuneError
from reftune.review.journal import DEFAULT_REVIEWER, DECISIONS, Event, Journal, SampleReview, apply_event, parse_line
from reftune.review.records import Collection, Record, Sample

MARKS = ("edited", "accepted", "rejected", "flagged", "written")  # a record's marks: what some sample of it has


class EditConflict(Exception):
    """An edit based on an older version than the saved one: nothing was written."""

    def __init__(self, current: SampleReview):
        super().__init__(f"the sample was edited since (version {current.version})")
        self.current = current  # the newer saved edit, to show the reviewer


class ReviewState:
    """Reviews of the collection's samples: reviewer -> record index -> sample number -> review. A CoT
    written by hand is a sample of its record numbered after the record's own; every reviewer sees it."""

    def __init__(self, collection: Collection):
        self.collection = collection
        self.journals = {source.number: Journal(source.journal_path) for source in collection.sources}
        self.lock = threading.Lock()
        self.changes = 0  # bumped by every change: cached query results depend on it
        self.reviews: dict[str, dict[int, dict[int, SampleReview]]] = {}
        self.written: dict[int, list[Sample]] = {}     # record index -> its CoTs written by hand, in order
        self.settled: dict[int, dict[int, Event]] = {}  # record index -> sample -> the adjudicator's settle
        self.problems: list[str] = []
        # (source, id) -> journaled events of a record not read yet (a big file is read as the app runs)
        self.pending: dict[tuple[int, str], list[Event]] = {}
        for number, journal in self.journals.items():
            self.take_in(number, journal.read_new())

    def take_in(self, source: int, lines: list[str]) -> None:
        """Apply journal lines (a line that is no event is skipped and reported)."""
        for line in lines:
            if not line.strip():
                continue
            try:
                event = parse_line(line)
            except ValueError as exc:
                self.problems.append(f"{self.journals[source].path}: {exc} (skipped)")
                continue
            index = self.collection.ids.get((source, event.id))
            if index is None:
                self.pending.setdefault((source, event.id), []).append(event)
            else:
                self.apply_journaled(source, index, event)

    def apply_journaled(self, source: int, index: int, event: Event) -> None:
        problem = self.apply(index, event)
        if problem:
            self.problems.append(f"{self.journals[source].path}: {problem} (skipped)")

    def took(self, records) -> None:
        """Records just read: apply what the journal holds for them (under the lock)."""
        for record in records:
            for event in self.pending.pop((record.source, record.id), ()):
                self.apply_journaled(record.source, record.index, event)

    def apply(self, index: int, event: Event) -> str:
        """Apply one event to the record at `index`; what is wrong with it, or "" once applied. A
        written CoT takes the next number, so a write numbered otherwise is not this data's."""
        record = self.collection.records[index]
        if event.event == "write" and event.sample != len(self.samples(record)):
            return f"a CoT written as sample {event.sample} of {event.id}, which has {len(self.samples(record))}"
        if event.event == "settle" and event.text not in DECISIONS.values():
            return f"a settle of {event.id} to {event.text[:20]!r}, not accepted or rejected"
        if event.event == "write":
            self.written.setdefault(index, []).append(
                Sample(event.text, event.answer, event.status, origin="written", detail=event.detail,
                       author=event.reviewer, source=event.source))
        if event.event == "settle":
            self.settled.setdefault(index, {})[event.sample] = event
            self.changes += 1
            return ""
        samples = self.reviews.setdefault(event.reviewer, {}).setdefault(index, {})
        samples[event.sample] = apply_event(samples.get(event.sample, SampleReview()), event)
        self.changes += 1
        return ""

    def refresh(self) -> None:
        """Take in what another `reftune review` process on the same data has journaled since."""
        with self.lock:
            for number, journal in self.journals.items():
                if journal.has_news():
                    with journal.locked("rb"):
                        self.take_in(number, journal.read_new())

    def read_only_sources(self) -> list[str]:
        return [str(journal.path.parent) for journal in self.journals.values() if not journal.writable]

    def samples(self, record: Record) -> tuple[Sample, ...]:
        """The record's samples as the input holds them, then the CoTs written for it by hand."""
        written = self.written.get(record.index)
        return record.samples + tuple(written) if written else record.samples

    def review(self, index: int, sample: int, reviewer: str = DEFAULT_REVIEWER) -> SampleReview:
        return self.reviews.get(reviewer, {}).get(index, {}).get(sample, SampleReview())

    def record_reviews(self, record: Record, reviewer: str = DEFAULT_REVIEWER) -> list[SampleReview]:
        return [self.review(record.index, number, reviewer) for number in range(len(self.samples(record)))]

    def sample_reviews(self, index: int, sample: int) -> dict[str, SampleReview]:
        """Every reviewer's review of one sample (those who did something to it)."""
        found = {}
        for reviewer, records in self.reviews.items():
            review = records.get(index, {}).get(sample)
            if review is not None and review != SampleReview():
                found[reviewer] = review
        return found

    def touched(self) -> list[tuple[int, int]]:
        """(record index, sample) of every sample some reviewer did something to, in file order."""
        reviewed = {(index, number) for records in self.reviews.values()
                    for index, samples in records.items() for number in samples}
        return sorted(reviewed | {(index, number) for index, samples in self.settled.items() for number in samples})

    def marks(self, index: int, reviewer: str = DEFAULT_REVIEWER) -> set[str]:
        """Which of MARKS some sample of the record has in the reviewer's review."""
        marks = {"written"} if self.written.get(index) else set()
        for review in self.reviews.get(reviewer, {}).get(index, {}).values():
            if review.edited:
                marks.add("edited")
            if review.decision:
                marks.add(review.decision)
            if review.flagged:
                marks.add("flagged")
        return marks

    def touched_sources(self) -> set[int]:
        """Inputs with at least one reviewed sample: the ones an export writes files for."""
        return {self.collection.records[index].source for index, _ in self.touched()}

    def reviewed_count(self, reviewer: str = DEFAULT_REVIEWER, among=None) -> int:
        """Records (of `among`, when given) with at least one sample the reviewer accepted or rejected:
        the progress count."""
        return sum(1 for index, samples in self.reviews.get(reviewer, {}).items()
                   if (among is None or index in among) and any(r.decision for r in samples.values()))

    def act(self, record: Record, sample: int, event: Event) -> Event:
        """Journal the event, then apply it; the event as journaled (with its time, and for a CoT
        written by hand the next sample number, taken here under the lock). An edit based on an older
        version raises EditConflict."""
        if record.error or (event.event != "write" and not 0 <= sample < len(self.samples(record))):
            raise ReftuneError(f"record {record.index} has no sample {sample}")
        journal = self.journals[record.source]
        if not journal.writable:
            raise ReftuneError(f"cannot write the journal {journal.path}: the folder is read-only, "
                               f"so this review cannot be saved (copy the data somewhere writable)")
        with self.lock, journal.locked() as handle:
            self.take_in(record.source, journal.read_new())
            if event.event == "write":
                event = replace(event, sample=len(self.samples(record)))
            current = self.review(record.index, event.sample, event.reviewer)
            if event.event == "edit" and event.base != current.version:
                raise EditConflict(current)
            journaled = journal.append(handle, event)
            self.apply(record.index, journaled)
            return journaled
