"""Ordering the records by a trained verifier's doubt (`reftune review DATA --verifier FOLDER`, the folder
`reftune verifier` writes): each sample's P(correct) as `reftune eval --mode rerank` scores it (the
task's prompt, then the CoT), a record's score its least trusted sample's, the most doubtful first.

Scoring runs on a thread of its own from the start, a few dozen records at a time in the order they
were read (those read later, the rest of a big file or a growing file's new rows, join the queue as
they come), so the pages never wait for it: until it has caught up the doubt order holds the records
read and scored so far (then the rest, in file order), and the page says how far it has come. Torch
and the model load there too.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from reftune.review.checking import TRAINING_ORIGINS, with_stated_answer
from reftune.review.records import Collection, Record
from reftune.tasks import Example

RECORDS_PER_STEP = 32  # records scored between two updates of the order
BATCH_SIZE = 16  # (prompt, CoT) pairs per forward pass


@dataclass(frozen=True)
class Progress:
    """How far scoring has come, for the page."""

    scored: int  # records scored so far
    total: int  # records with samples to score
    error: str  # why scoring stopped, "" while it goes well

    @property
    def done(self) -> bool:
        return self.scored == self.total or bool(self.error)


def check_verifier(folder: str) -> None:
    """One line, before anything loads, for a folder that is not a verifier."""
    from reftune.model.heads import check_verifier_folder

    check_verifier_folder(folder)


def scored_texts(collection: Collection, record: Record) -> list[tuple[str, str]]:
    """(prompt, CoT) of each of the record's samples, as the verifier reads them: a training file's
    N-CoT with its answer line, as the check reads it."""
    task = collection.tasks[record.source]
    prompt = task.prompt(Example(record.id, record.question, record.gold))
    return [(prompt, with_stated_answer(task, s.text, record.gold) if s.origin in TRAINING_ORIGINS else s.text)
            for s in record.samples]


class VerifierScores:
    """P(correct) of every record's samples, filled in by a background thread. Records read after the
    start (the rest of a big file, a growing file's new rows) join the queue through add(); a record
    that grew (a rollouts question's later steps) is scored again, its earlier scores dropped."""

    def __init__(self, folder: str, collection: Collection):
        self.folder, self.collection = folder, collection
        self._known: dict[int, Record] = {}  # record index -> the record to score, in its latest version
        self._queue: dict[int, Record] = {}  # those not scored yet, in the order they came
        self._scores: dict[int, list[float]] = {}  # record index -> its samples' P(correct)
        self._error = ""
        self.version = 0  # bumped by every change to the scores: the doubt order depends on it
        self._order: tuple[tuple[int, int], list[int]] | None = None  # ((version, records), the order)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # more to score, or scores stored
        self._thread = threading.Thread(target=self._run, name="reftune-review-verifier", daemon=True)
        self.add(collection.records)

    def start(self) -> VerifierScores:
        self._thread.start()
        return self

    def add(self, added, grown=()) -> None:
        """Queue records just read, and those that grew (their scores no longer cover every sample)."""
        with self._changed:
            for record in (*added, *grown):
                if record.samples and not record.error:
                    self._known[record.index] = self._queue[record.index] = record
                    if self._scores.pop(record.index, None) is not None:
                        self.version += 1
            self._changed.notify_all()

    def _run(self) -> None:
        try:
            score = self._load()
            while True:
                records = self._next_records()
                pairs = [scored_texts(self.collection, record) for record in records]
                found = iter(score([pair for group in pairs for pair in group]))
                self._store(records, [[next(found) for _ in group] for group in pairs])
        except Exception as exc:  # the page says why; the review goes on without the order
            with self._changed:
                self._error = f"{type(exc).__name__}: {str(exc)[:300]}"
                self._changed.notify_all()

    def _next_records(self) -> list[Record]:
        """Up to RECORDS_PER_STEP records off the queue, waiting for some when it is empty."""
        with self._changed:
            self._changed.wait_for(lambda: self._queue)
            taken = list(self._queue)[:RECORDS_PER_STEP]
            return [self._queue.pop(index) for index in taken]

    def _store(self, records: list[Record], scores: list[list[float]]) -> None:
        """Keep the scores of the records still in the version scored (one that grew meanwhile is
        queued again: its scores would miss its new samples)."""
        with self._changed:
            for record, found in zip(records, scores):
                if self._known.get(record.index) is record:
                    self._scores[record.index] = found
            self.version += 1
            self._changed.notify_all()

    def _load(self):
        """The scoring function: pairs -> P(correct), reftune eval's own."""
        import torch

        from reftune.model.heads import load_verifier
        from reftune.training.samples import verifier_scores

        verifier, tokenizer = load_verifier(self.folder, "cuda" if torch.cuda.is_available() else "cpu")
        return lambda pairs: verifier_scores(verifier, tokenizer, pairs, BATCH_SIZE)

    def wait(self, timeout: float | None = None) -> Progress:
        """For tests and scripts: the progress once every record given so far is scored (or scoring
        stopped, or the timeout passed)."""
        with self._changed:
            self._changed.wait_for(lambda: self._error or len(self._scores) == len(self._known), timeout)
        return self.progress()

    def progress(self) -> Progress:
        with self._lock:
            return Progress(len(self._scores), len(self._known), self._error)

    def sample_scores(self, index: int) -> list[float] | None:
        with self._lock:
            return self._scores.get(index)

    def record_score(self, index: int) -> float | None:
        """The record's least trusted sample's P(correct); None until it is scored."""
        scores = self.sample_scores(index)
        return min(scores) if scores else None

    def doubt_order(self, count: int | None = None) -> tuple[int, list[int]]:
        """(the scores' version, the first `count` records' indices, by default all read): the scored
        ones by their score, lowest first, then the rest in file order (each input's in turn: a big
        input's later records come after the next input's first ones). Made again only when the
        scores or the records changed."""
        records = self.collection.records
        count = len(records) if count is None else count
        with self._lock:
            if self._order is None or self._order[0] != (self.version, count):
                lowest = {index: min(scores) for index, scores in self._scores.items() if index < count}
                ranked = sorted(lowest, key=lambda index: (lowest[index], records[index].source, index))
                rest = sorted((i for i in range(count) if i not in lowest), key=lambda i: records[i].source)
                self._order = ((self.version, count), ranked + rest)
            return self.version, self._order[1]
