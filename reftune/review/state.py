"""The live review of a session: every sample's review, replayed from the journals at start and kept
in step with them as the reviewer acts. One lock orders the actions of all tabs."""
from __future__ import annotations

import threading
from dataclasses import dataclass

from reftune.errors import ReftuneError
from reftune.review.journal import Event, Journal, SampleReview, apply_event, replay
from reftune.review.records import Collection, Record

MARKS = ("edited", "accepted", "rejected", "flagged")  # a record's marks: what some sample of it has


@dataclass(frozen=True)
class EditConflict(Exception):
    """An edit based on an older version than the saved one: nothing was written."""

    current: SampleReview   # the newer saved edit, to show the reviewer


class ReviewState:
    """Reviews of the collection's samples, keyed by record index and sample number."""

    def __init__(self, collection: Collection):
        self.collection = collection
        self.journals = {source.number: Journal(source.journal_path) for source in collection.sources}
        self.lock = threading.Lock()
        self.changes = 0  # bumped by every action: cached query results depend on it
        self.reviews: dict[int, dict[int, SampleReview]] = {}
        self.problems: list[str] = []
        by_key = {(record.source, record.id): record.index for record in collection.records if not record.error}
        for number, journal in self.journals.items():
            replayed, problems = replay(journal.lines())
            self.problems += [f"{journal.path}: {problem} (skipped)" for problem in problems]
            for (record_id, sample), review in replayed.items():
                index = by_key.get((number, record_id))
                if index is not None:
                    self.reviews.setdefault(index, {})[sample] = review

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
        with self.lock:
            current = self.review(record.index, sample)
            if event.event == "edit" and event.base != current.version:
                raise EditConflict(current)
            written = journal.append(event)
            updated = apply_event(current, written)
            self.reviews.setdefault(record.index, {})[sample] = updated
            self.changes += 1
            return updated
