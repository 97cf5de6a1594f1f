"""One review session: the collection as far as it is read, its index, the team and its queues, the
live review state and the re-checks already run. The pages ask it questions, on behalf of one
reviewer where the answer is theirs (their queue, their marks); it knows nothing about HTTP.

A big samples file is read a piece at a time (by a background thread the command starts), so the
first page shows at once; until every record is read, lists and charts cover the records read so
far and say so, and Export waits. The inputs that grow (an RL run appending to rollouts.jsonl) are
read again, for their new lines only, when a page asks whether they changed."""
from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict, defaultdict
from dataclasses import dataclass

from reftune.errors import ReftuneError
from reftune.review.agreement import Agreement, agreement_table
from reftune.review.checking import TRAINING_ORIGINS, check_cots
from reftune.review.doubt import VerifierScores
from reftune.review.export import ExportCounts, KeptSample, decision_rows, export_paths, export_source, exported
from reftune.review.journal import DEFAULT_REVIEWER, SampleReview
from reftune.review.query import MARK_FILTERS, Query, build_index, select
from reftune.review.records import Change, Collection, Record, Sample
from reftune.review.state import ReviewState
from reftune.review.suggest import Suggester
from reftune.review.team import Settlement, Team, assign, disagree, settle
from reftune.scoring.verification import Verdict

CACHED_QUERIES = 32
REMEMBERED = 16             # values remember() keeps (charts of earlier versions of the data drop out)
CHUNK_BYTES = 64 * 1024     # of a big input read at a time: about 120 samples rows, some 15 ms
STEP_ASIDE_S = 0.3          # the background reading pauses up to this long after a page starts (one interpreter lock)


class UnknownRecord(ReftuneError):
    """A URL names a record the session does not hold."""


class NotYours(ReftuneError):
    """A reviewer asks for a record of another reviewer's queue, or for the adjudicator's work."""


@dataclass(frozen=True)
class Disagreement:
    """A sample the reviewers decided differently, with what each of them did and how it stands."""

    record: Record
    number: int
    sample: Sample
    reviews: tuple[tuple[str, SampleReview], ...]  # (reviewer, review), of those who decided it
    settlement: Settlement


class Session:
    """What the app serves, loaded once at start."""

    def __init__(self, collection: Collection, include_failing: bool = False, team: Team | None = None,
                 suggester: Suggester | None = None, verifier: VerifierScores | None = None):
        self.collection = collection
        self.suggester = suggester  # asks a model for CoTs (--suggest-endpoint)
        self.verifier = verifier  # the doubt order's scores, filled in as they come (--verifier)
        self.records = collection.records
        self.index = build_index(collection.records)
        self.state = ReviewState(collection)
        self.include_failing = include_failing  # Export writes the kept CoTs that fail the check too
        self.team = team or Team()
        self._assignment = assign(self.team, len(collection.records))
        self.read_all_at: float | None = None if collection.unread() is not None else 0.0
        self.reading_failed = ""  # why the reading of the inputs stopped short, if it did
        self._reading = threading.Lock()  # one reader of the inputs at a time
        self._page_at = 0.0               # when a page last started (the background reading steps aside)
        self._matches: OrderedDict = OrderedDict()
        self._verdicts: dict[int, list] = {}
        self._edit_checks: dict[tuple[int, int, str], Verdict] = {}
        self._failing: dict[str, tuple[int, list[KeptSample], set[int]]] = {}  # reviewer -> (changes, failing, indices)
        self._remembered: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    @property
    def assignment(self):
        """The team's queues over the records read so far (records read later join them, and leave
        the earlier ones where they were)."""
        if len(self._assignment.by_record) != len(self.records):
            self._assignment = assign(self.team, len(self.records), self._assignment)
        return self._assignment

    def read_more(self, limit: int | None = CHUNK_BYTES) -> bool:
        """Read the next piece of the first input not read to its end; False once every one is."""
        with self._reading:
            source = self.collection.unread()
            if source is None:
                return False
            self.take(self.collection.read(source, limit))
            return True

    def read_all(self) -> None:
        while self.read_more(None):
            pass
        self.read_all_at = time.perf_counter()

    def read_in_background(self, done=None) -> threading.Thread:
        """Read the rest of the inputs in a daemon thread, call done(), then let the pages stop
        saying "still loading" (so that whoever waits for them finds done's work done); a failure
        stops the reading with its reason kept (Export then refuses, saying why)."""
        def read_rest():
            try:
                while self.read_more():
                    self.step_aside()
            except Exception as exc:  # noqa: BLE001 (a thread's failure is otherwise only a traceback on stderr)
                self.reading_failed = f"{type(exc).__name__}: {exc}"
            if done is not None:
                done()
            if not self.reading_failed:
                self.read_all_at = time.perf_counter()
        thread = threading.Thread(target=read_rest, name="review-reading", daemon=True)
        thread.start()
        return thread

    def step_aside(self) -> None:
        """Between two pieces of the background reading: pause while a page that just started is
        being made, so that it does not share the interpreter with the reading (it would take twice
        as long); once per piece, so that pages asked for without end still let the reading on."""
        time.sleep(min(max(self._page_at + STEP_ASIDE_S - time.perf_counter(), 0.0), STEP_ASIDE_S))

    def catch_up(self) -> None:
        """As a page starts: the background reading steps aside for it; once every input is read,
        read what a growing input gained since (a stat per input, then only its new lines),
        unless another reader is at work."""
        self._page_at = time.perf_counter()
        if self.read_all_at is None or not self._reading.acquire(blocking=False):
            return
        try:
            for source in self.collection.grown():
                self.take(self.collection.read(source))
        finally:
            self._reading.release()

    def take(self, change: Change) -> None:
        """Add what a read brought: records, their index fields, and the journal's events for them,
        under the review's lock so that no action lands on a record before its journaled past."""
        if not change:
            return
        with self.state.lock:
            change = self.keep_written_numbers(change)
            self.collection.add(change)
            self.index.add(change.added)
            self.index.replace(change.grown)
            self.state.took(change.added)
        if self.verifier is not None:  # the new records, and those that grew, are scored (again)
            self.verifier.add(change.added, change.grown)
        with self._lock:
            for record in change.grown:  # its samples as written are checked again, with the new ones
                self._verdicts.pop(record.index, None)

    def keep_written_numbers(self, change: Change) -> Change:
        """A rollouts question with a CoT written by hand does not grow here: the CoT is numbered after
        the samples logged so far, and the journal addresses it by that number."""
        held = [record for record in change.grown if self.state.written.get(record.index)]
        for record in held:
            self.collection.problems.append(f"{record.id} has a CoT written by hand, so the steps logged for it "
                                            f"since are left out of this review (its numbers would move)")
        kept = tuple(record for record in change.grown if not self.state.written.get(record.index))
        return Change(change.added, kept) if held else change

    @property
    def loading(self) -> int | None:
        """The percentage of the inputs read while they are being read; None once all of them are."""
        return None if self.read_all_at is not None else int(100 * self.collection.fraction_read())

    def check_read(self, what: str) -> None:
        """Refuse `what` until every record is read: a decision on a record not read yet would be left out."""
        if self.reading_failed:
            raise ReftuneError(f"cannot {what}: reading the inputs stopped ({self.reading_failed}); restart the review")
        if self.loading is not None:
            raise ReftuneError(f"still loading the inputs ({self.loading}%): {what} once every record is read, "
                               f"so that no decision is left out")

    def record(self, index: int) -> Record:
        if not 0 <= index < len(self.records):
            still = f" (still loading: {self.loading}% read)" if self.loading is not None else ""
            raise UnknownRecord(f"no record {index}: this review holds records 0 to {len(self.records) - 1}{still}")
        return self.records[index]

    def record_by_id(self, source: int, record_id: str) -> Record:
        index = self.collection.ids.get((source, record_id))
        if index is None:
            raise UnknownRecord(f"no question {record_id[:80]!r} in input {source}")
        return self.records[index]

    def source_records(self, source: int) -> list[Record]:
        return [record for record in self.records if record.source == source]

    def queue(self, reviewer: str) -> frozenset | None:
        """The record indices the reviewer reviews; None: every record (one reviewer)."""
        return None if len(self.team.reviewers) == 1 else self.assignment.queue(reviewer)

    def check_queue(self, record: Record, reviewer: str) -> Record:
        """The record, if it is in the reviewer's queue; NotYours otherwise."""
        queue = self.queue(reviewer)
        if queue is not None and record.index not in queue:
            raise NotYours(f"record {record.index} is in another reviewer's queue, not in {reviewer}'s: "
                           f"the list shows yours")
        return record

    def matches(self, query: Query, reviewer: str = DEFAULT_REVIEWER) -> list[int]:
        """Record indices of the reviewer's queue the query selects (cached per version of the data;
        a filter on marks also keys on the changes, the doubt order on the verifier's scores)."""
        depends_on_marks = query.filter in MARK_FILTERS or query.filter == "unreviewed"
        version = self.collection.version  # read before the order: records read meanwhile miss the cache next time
        scoring, order = self.doubt_order() if query.sort == "doubt" else (None, None)
        key = (reviewer, query.filter, query.search, query.sort, version,
               self.state.changes if depends_on_marks else None, scoring)
        with self._lock:
            if key in self._matches:
                self._matches.move_to_end(key)
                return self._matches[key]
        failing = self.failing_records(reviewer) if query.filter == "failing" else set()
        found = select(self.index, query, lambda index: self.marks(index, failing, reviewer), order)
        queue = self.queue(reviewer)
        if queue is not None:
            found = [index for index in found if index in queue]
        with self._lock:
            self._matches[key] = found
            while len(self._matches) > CACHED_QUERIES:
                self._matches.popitem(last=False)
        return found

    def doubt_order(self) -> tuple[int, list[int]]:
        """(the scores' version, the indexed records, the most doubtful first): the records read and
        scored so far, then the rest in file order."""
        if self.verifier is None:
            raise ReftuneError("the doubt order needs a verifier: start the review with --verifier FOLDER "
                               "(a folder `reftune verifier` wrote)")
        return self.verifier.doubt_order(self.index.count)

    def marks(self, index: int, failing: set[int] | None = None, reviewer: str = DEFAULT_REVIEWER) -> set[str]:
        """The record's marks in the reviewer's review, and "failing" when a sample they keep fails the
        check. failing: failing_records(reviewer), when the caller asks for many records."""
        failing = self.failing_records(reviewer) if failing is None else failing
        return self.state.marks(index, reviewer) | ({"failing"} if index in failing else set())

    def verdicts(self, record: Record) -> list[Verdict]:
        """The verification of the record's samples as written (programs run once per session), then
        of its CoTs written by hand (checked when they were saved)."""
        written = self.state.samples(record)[len(record.samples):]
        return self.verdicts_of([record])[record.index] + [Verdict(s.status, s.answer, s.detail) for s in written]

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

    def kept_by(self, reviewer: str, source: int | None = None) -> list[KeptSample]:
        """The samples the reviewer keeps (accepted, or edited and not rejected), in file order, each
        with its check: what the reviewer's header warns of before an export."""
        with self.state.lock:
            touched = sorted((index, number, review)
                             for index, samples in self.state.reviews.get(reviewer, {}).items()
                             for number, review in samples.items() if exported(review))
        touched = [t for t in touched if source is None or self.records[t[0]].source == source]
        self.verdicts_of([self.records[index] for index, _, review in touched if not review.edited])  # one batch
        return [self.kept_sample(self.records[index], number, review) for index, number, review in touched]

    def kept_sample(self, record: Record, number: int, review: SampleReview) -> KeptSample:
        """A sample in a review's version: an edit's check is the re-check journaled when it was
        saved (the one its card shows), a sample as written is checked here once per session."""
        if review.edited:
            return KeptSample(record, number, review.text, self.edit_verdict(record, number, review))
        return KeptSample(record, number, self.state.samples(record)[number].text, self.verdicts(record)[number])

    def settlements(self, source: int | None = None) -> list[tuple[int, int, Settlement]]:
        """(record index, sample, settlement) of every sample a reviewer decided, in file order."""
        found = []
        with self.state.lock:
            touched = [(i, n) for i, n in self.state.touched() if source is None or self.records[i].source == source]
            for index, number in touched:
                adjudicated = self.state.settled.get(index, {}).get(number)
                settled = settle(self.state.sample_reviews(index, number), adjudicated.text if adjudicated else "",
                                 self.team.export_majority)
                if settled is not None:
                    found.append((index, number, settled))
        return found

    def kept_samples(self, source: int | None = None) -> list[KeptSample]:
        """What Export keeps: each sample whose settled decision is to accept it, in the version of
        every reviewer who kept it (the same text once), in file order. One reviewer: their kept samples."""
        kept = []
        self.check_read("export")
        accepted = [(index, number, s) for index, number, s in self.settlements(source) if s.decision == "accepted"]
        self.verdicts_of([self.records[index] for index, _, _ in accepted])  # one sandbox call for them all
        for index, number, settled in accepted:
            record, texts = self.records[index], set()
            reviews = [self.state.review(index, number, name) for name in settled.keepers] or [SampleReview()]
            for review in reviews:
                sample = self.kept_sample(record, number, review)
                if sample.text not in texts:
                    texts.add(sample.text)
                    kept.append(sample)
        return kept

    def edit_verdict(self, record: Record, number: int, review: SampleReview) -> Verdict:
        """The journaled re-check of an edit; an edit journaled without one is checked now."""
        if review.status:
            return Verdict(review.status, review.answer, review.detail)
        key = (record.index, number, review.text)
        with self._lock:
            if key in self._edit_checks:
                return self._edit_checks[key]
        training = self.state.samples(record)[number].origin in TRAINING_ORIGINS
        found = check_cots(self.collection.tasks[record.source], [review.text], [record.gold], training)[0]
        with self._lock:
            return self._edit_checks.setdefault(key, found)

    def failing(self, reviewer: str = DEFAULT_REVIEWER) -> list[KeptSample]:
        """The reviewer's kept samples that fail the check: what the page warns of before an export."""
        return self._failing_now(reviewer)[1]

    def failing_records(self, reviewer: str = DEFAULT_REVIEWER) -> set[int]:
        """Indices of the records with a sample the reviewer keeps that fails the check."""
        return self._failing_now(reviewer)[2]

    def _failing_now(self, reviewer: str) -> tuple[int, list[KeptSample], set[int]]:
        """Recomputed only after a change to the review (the checks themselves are cached)."""
        changes, cached = self.state.changes, self._failing.get(reviewer)
        if cached is None or cached[0] != changes:
            found = [kept for kept in self.kept_by(reviewer) if kept.failing]
            cached = self._failing[reviewer] = (changes, found, {kept.record.index for kept in found})
        return cached

    def export(self) -> list[ExportCounts]:
        """Write the export files of every input with a reviewed sample; what each holds and how its
        decisions were settled."""
        self.check_read("export")
        paths = export_paths(self.collection.sources)
        touched = self.state.touched_sources()
        return [export_source(source, self.kept_samples(source.number), self.decisions(source.number),
                              paths[source.number], self.collection.tasks[source.number], self.include_failing,
                              Counter(settled.how for _, _, settled in self.settlements(source.number)))
                for source in self.collection.sources if source.number in touched]

    def decisions(self, source: int) -> list[dict]:
        """The decisions CSV's rows of one input: one per reviewer and sample they touched."""
        self.check_read("export")
        records = [record for record in self.source_records(source) if not record.error]
        settled = {(index, number): s for index, number, s in self.settlements(source)}
        label = self.collection.sources[source].label
        return decision_rows(records, self.state.samples, self.state.record_reviews, label, self.reviewer_names(),
                             settled)

    def reviewer_names(self) -> list[str]:
        """The team's reviewers, then anyone else the journal names (a review begun alone, say)."""
        return [*self.team.reviewers, *sorted(set(self.state.reviews) - set(self.team.reviewers))]

    def disagreements(self) -> list[Disagreement]:
        """The samples the reviewers decided differently, settled or not, in file order."""
        found = []
        for index, number, settled in self.settlements():
            reviews = self.state.sample_reviews(index, number)
            if disagree(reviews):
                record = self.records[index]
                decided = tuple((name, reviews[name]) for name in self.reviewer_names() if name in reviews)
                found.append(Disagreement(record, number, self.state.samples(record)[number], decided, settled))
        return found

    def agreement(self, source: int) -> list[Agreement]:
        """The agreement table over the samples of the input's records that two or more reviewers
        share (their assigned reviewers, in sorted order)."""
        shared = []
        with self.state.lock:
            for record in self.source_records(source):
                names = sorted(self.assignment.reviewers_of(record.index))
                if len(names) > 1 and not record.error:
                    shared += [tuple(self.state.review(record.index, number, name) for name in names)
                               for number in range(len(self.state.samples(record)))]
        return agreement_table(shared, cohen=len(self.team.reviewers) == 2)

    def remember(self, key, compute):
        """compute() once per key: for what depends only on the data, such as the charts (a key
        that names the data's version computes again once it changed)."""
        with self._lock:
            if key in self._remembered:
                return self._remembered[key]
        value = compute()
        with self._lock:
            value = self._remembered.setdefault(key, value)
            while len(self._remembered) > REMEMBERED:
                self._remembered.popitem(last=False)
            return value
