"""One review session: the loaded collection, its index, the live review state and the re-checks
already run. The pages ask it questions; it knows nothing about HTTP."""
from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict

from reftune.errors import ReftuneError
from reftune.review.checking import TRAINING_ORIGINS, check_cots
from reftune.review.export import ExportCounts, KeptSample, decision_rows, export_paths, export_source, exported
from reftune.review.journal import SampleReview
from reftune.review.query import MARK_FILTERS, Query, build_index, select
from reftune.review.records import Collection, Record
from reftune.review.state import ReviewState
from reftune.verification import Verdict

CACHED_QUERIES = 32


class UnknownRecord(ReftuneError):
    """A URL names a record the session does not hold."""


class Session:
    """What the app serves, loaded once at start."""

    def __init__(self, collection: Collection, include_failing: bool = False):
        self.collection = collection
        self.records = collection.records
        self.index = build_index(collection.records)
        self.state = ReviewState(collection)
        self.include_failing = include_failing  # Export writes the kept CoTs that fail the check too
        self._matches: OrderedDict = OrderedDict()
        self._verdicts: dict[int, list] = {}
        self._edit_checks: dict[tuple[int, int, str], Verdict] = {}
        self._failing: tuple[int, list[KeptSample], set[int]] | None = None  # (state.changes, failing(), indices)
        self._remembered: dict = {}
        self._lock = threading.Lock()
        self._by_id = {(r.source, r.id): r.index for r in collection.records if not r.error}

    def record(self, index: int) -> Record:
        if not 0 <= index < len(self.records):
            raise UnknownRecord(f"no record {index}: this review holds records 0 to {len(self.records) - 1}")
        return self.records[index]

    def record_by_id(self, source: int, record_id: str) -> Record:
        index = self._by_id.get((source, record_id))
        if index is None:
            raise UnknownRecord(f"no question {record_id[:80]!r} in input {source}")
        return self.records[index]

    def source_records(self, source: int) -> list[Record]:
        return [record for record in self.records if record.source == source]

    def matches(self, query: Query) -> list[int]:
        """Record indices the query selects (cached; a filter on marks also keys on the changes)."""
        depends_on_marks = query.filter in MARK_FILTERS or query.filter == "unreviewed"
        key = (query.filter, query.search, query.sort, self.state.changes if depends_on_marks else None)
        with self._lock:
            if key in self._matches:
                self._matches.move_to_end(key)
                return self._matches[key]
        failing = self.failing_records() if query.filter == "failing" else set()
        found = select(self.index, query, lambda index: self.marks(index, failing))
        with self._lock:
            self._matches[key] = found
            while len(self._matches) > CACHED_QUERIES:
                self._matches.popitem(last=False)
        return found

    def marks(self, index: int, failing: set[int] | None = None) -> set[str]:
        """The record's review marks, and "failing" when a sample it keeps fails the check.
        failing: failing_records(), when the caller asks for many records."""
        failing = self.failing_records() if failing is None else failing
        return self.state.marks(index) | ({"failing"} if index in failing else set())

    def verdicts(self, record: Record) -> list[Verdict]:
        """The verification of the record's samples as written (programs run once per session)."""
        return self.verdicts_of([record])[record.index]

    def verdicts_of(self, records: list[Record]) -> dict[int, list[Verdict]]:
        """record index -> the verdicts of its samples as written; the records not checked yet are
        checked together, one sandbox call per input (and per kind of CoT)."""
        with self._lock:
            missing = {record.index: record for record in records if record.index not in self._verdicts}
        groups = defaultdict(list)
        for record in missing.values():
            training = bool(record.samples) and record.samples[0].origin in TRAINING_ORIGINS
            groups[record.source, training].append(record)
        for (source, training), group in groups.items():
            texts = [sample.text for record in group for sample in record.samples]
            golds = [record.gold for record in group for _ in record.samples]
            found = iter(check_cots(self.collection.tasks[source], texts, golds, training))
            with self._lock:
                for record in group:
                    self._verdicts[record.index] = [next(found) for _ in record.samples]
        with self._lock:
            return {record.index: self._verdicts[record.index] for record in records}

    def kept_samples(self, source: int | None = None) -> list[KeptSample]:
        """The samples an export keeps (accepted, or edited and not rejected), in file order, each
        with its check: an edit's is the re-check journaled when it was saved (the one its card
        shows), a sample as written is checked here once per session."""
        with self.state.lock:
            touched = [(index, number, review) for index, samples in self.state.reviews.items()
                       for number, review in samples.items() if exported(review)]
        touched = sorted((t for t in touched if source is None or self.records[t[0]].source == source),
                         key=lambda t: t[:2])
        as_written = self.verdicts_of([self.records[index] for index, _, review in touched if not review.edited])
        kept = []
        for index, number, review in touched:
            record = self.records[index]
            if review.edited:
                kept.append(KeptSample(record, number, review.text, self.edit_verdict(record, number, review)))
            else:
                kept.append(KeptSample(record, number, record.samples[number].text, as_written[index][number]))
        return kept

    def edit_verdict(self, record: Record, number: int, review: SampleReview) -> Verdict:
        """The journaled re-check of an edit; an edit journaled without one is checked now."""
        if review.status:
            return Verdict(review.status, review.answer, review.detail)
        key = (record.index, number, review.text)
        with self._lock:
            if key in self._edit_checks:
                return self._edit_checks[key]
        training = record.samples[number].origin in TRAINING_ORIGINS
        found = check_cots(self.collection.tasks[record.source], [review.text], [record.gold], training)[0]
        with self._lock:
            return self._edit_checks.setdefault(key, found)

    def failing(self) -> list[KeptSample]:
        """The kept samples that fail the check: what the page warns of before an export."""
        return self._failing_now()[1]

    def failing_records(self) -> set[int]:
        """Indices of the records with a kept sample that fails the check."""
        return self._failing_now()[2]

    def _failing_now(self) -> tuple[int, list[KeptSample], set[int]]:
        """Recomputed only after a change to the review (the checks themselves are cached)."""
        changes, cached = self.state.changes, self._failing
        if cached is None or cached[0] != changes:
            found = [kept for kept in self.kept_samples() if kept.failing]
            cached = self._failing = (changes, found, {kept.record.index for kept in found})
        return cached

    def export(self) -> list[ExportCounts]:
        """Write the export files of every input with a reviewed sample; what each holds."""
        paths = export_paths(self.collection.sources)
        touched = self.state.touched_sources()
        return [export_source(source, self.kept_samples(source.number), self.decisions(source.number),
                              paths[source.number], self.collection.tasks[source.number], self.include_failing)
                for source in self.collection.sources if source.number in touched]

    def decisions(self, source: int) -> list[dict]:
        """The decisions CSV's rows of one input."""
        records = [record for record in self.source_records(source) if not record.error]
        return decision_rows(records, self.state.record_reviews, self.collection.sources[source].label)

    def remember(self, key, compute):
        """compute() once per key: for what depends only on the data, such as the charts."""
        with self._lock:
            if key in self._remembered:
                return self._remembered[key]
        value = compute()
        with self._lock:
            return self._remembered.setdefault(key, value)
