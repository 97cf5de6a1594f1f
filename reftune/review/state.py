"""The live review of a session: every sample's review, replayed from the journals at start and kept
in step with them as the reviewer acts. A lock orders the actions of all tabs; the journal's file
lock orders those of several `reftune review` processes on the same data."""
from __future__ import annotations

import threading

from reftune.errors import ReftuneError
from reftune.review.journal import Event, Journal, SampleReview, apply_event, parse_line
from reftune.review.records import Collection, Record

MARKS = ("edited", "accepted", "rejected", "flagged")  # a record's marks: what some sample of it has


class EditConflict(Exception):
    """An edit based on an older version than the saved one: nothing was written."""

    def __init__(self, current: SampleReview):
        super().__init__(f"the sample was edited since (version {current.version})")
        self.current = current  # the newer saved edit, to show the reviewer


class ReviewState:
    """Reviews of the collection's samples, keyed by record index and sample number."""

    def __init__(self, collection: Collection):
        self.collection = collection
        self.journals = {source.number: Journal(source.journal_path) for source in collection.sources}
        self.lock = threading.Lock()
        self.changes = 0  # bumped by every change: cached query results depend on it
        self.reviews: dict[int, dict[int, SampleReview]] = {}
        self.problems: list[str] = []
        self._index = {(record.source, record.id): record.index for record in collection.records if not record.error}
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
            index = self._index.get((source, event.id))
            if index is not None:
                samples = self.reviews.setdefault(index, {})
                samples[event.sample] = apply_event(samples.get(event.sample, SampleReview()), event)
                self.changes += 1

    def refresh(self) -> None:
        """Take in what another `reftune review` process on the same data has journaled since."""
        with self.lock:
            for number, journal in self.journals.items():
                if journal.has_news():
                    with journal.locked("rb"):
                        self.take_in(number, journal.read_new())

    def read_only_sources(self) -> list[str]:
        return [str(journal.path.parent) for journal in self.journals.values() if not journal.writable]

    def review(self, index: int, sample: int) -> SampleReview:
        return self.reviews.get(index, {}).get(sample, SampleReview())

    def record_reviews(self, record: Record) -> list[SampleReview]:
        return [self.review(record.index, number) for number in range(len(record.samples))]

    def marks(self, index: int) -> set[str]:
        """Which of MARKS some sample of the record has."""
        marks = set()
        for review in self.reviews.get(index, {}).values():
            if review.edited:
                marks.add("edited")
            if review.decision:
                marks.add(review.decision)
            if review.flagged:
                marks.add("flagged")
        return marks

    def touched_sources(self) -> set[int]:
        """Inputs with at least one reviewed sample: the ones an export writes files for."""
        return {self.collection.records[index].source for index, samples in self.reviews.items() if samples}

    def reviewed_count(self) -> int:
        """Records with at least one accepted or rejected sample: the progress count."""
        return sum(1 for samples in self.reviews.values() if any(r.decision for r in samples.values()))

    def act(self, record: Record, sample: int, event: Event) -> SampleReview:
        """Journal the event, then apply it. An edit based on an older version raises EditConflict."""
        if record.error or not 0 <= sample < len(record.samples):
            raise ReftuneError(f"record {record.index} has no sample {sample}")
        journal = self.journals[record.source]
        if not journal.writable:
            raise ReftuneError(f"cannot write the journal {journal.path}: the folder is read-only, "
                               f"so this review cannot be saved (copy the data somewhere writable)")
        with self.lock, journal.locked() as handle:
            self.take_in(record.source, journal.read_new())
            current = self.review(record.index, sample)
            if event.event == "edit" and event.base != current.version:
                raise EditConflict(current)
            updated = apply_event(current, journal.append(handle, event))
            self.reviews.setdefault(record.index, {})[sample] = updated
            self.changes += 1
            return updated
