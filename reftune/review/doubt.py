"""Ordering the records by a trained verifier's doubt (`reftune review DATA --verifier FOLDER`, the folder
`reftune verifier` writes): each sample's P(correct) as `reftune eval --mode rerank` scores it (the
task's prompt, then the CoT), a record's score its least trusted sample's, the most doubtful first.

Scoring runs on a thread of its own from the start, a few dozen records at a time in file order, so
the pages never wait for it: until it is done the doubt order holds the records scored so far (then
the rest, in file order), and the page says how far it has come. Torch and the model load there too.
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
    from reftune.heads import check_verifier_folder

    check_verifier_folder(folder)


def scored_texts(collection: Collection, record: Record) -> list[tuple[str, str]]:
    """(prompt, CoT) of each of the record's samples, as the verifier reads them: a training file's
    N-CoT with its answer line, as the check reads it."""
    task = collection.tasks[record.source]
    prompt = task.prompt(Example(record.id, record.question, record.gold))
    return [(prompt, with_stated_answer(task, s.text, record.gold) if s.origin in TRAINING_ORIGINS else s.text)
            for s in record.samples]


class VerifierScores:
    """P(correct) of every record's samples, filled in by a background thread."""

    def __init__(self, folder: str, collection: Collection):
        self.folder, self.collection = folder, collection
        self.todo = [record for record in collection.records if record.samples and not record.error]
        self._scores: dict[int, list[float]] = {}  # record index -> its samples' P(correct)
        self._error = ""
        self._order: tuple[int, list[int]] | None = None  # (records scored when it was made, the order)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="reftune-review-verifier", daemon=True)

    def start(self) -> VerifierScores:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            score = self._load()
            for start in range(0, len(self.todo), RECORDS_PER_STEP):
                records = self.todo[start:start + RECORDS_PER_STEP]
                pairs = [scored_texts(self.collection, record) for record in records]
                found = iter(score([pair for group in pairs for pair in group]))
                with self._lock:
                    for record, group in zip(records, pairs):
                        self._scores[record.index] = [next(found) for _ in group]
        except Exception as exc:  # the page says why; the review goes on without the order
            with self._lock:
                self._error = f"{type(exc).__name__}: {str(exc)[:300]}"

    def _load(self):
        """The scoring function: pairs -> P(correct), reftune eval's own."""
        import torch

        from reftune.heads import load_verifier
        from reftune.stages.samples import verifier_scores

        verifier, tokenizer = load_verifier(self.folder, "cuda" if torch.cuda.is_available() else "cpu")
        return lambda pairs: verifier_scores(verifier, tokenizer, pairs, BATCH_SIZE)

    def wait(self, timeout: float | None = None) -> Progress:
        """For tests and scripts: the progress once scoring has ended (or the timeout passed)."""
        self._thread.join(timeout)
        return self.progress()

    def progress(self) -> Progress:
        with self._lock:
            return Progress(len(self._scores), len(self.todo), self._error)

    def sample_scores(self, index: int) -> list[float] | None:
        with self._lock:
            return self._scores.get(index)

    def record_score(self, index: int) -> float | None:
        """The record's least trusted sample's P(correct); None until it is scored."""
        scores = self.sample_scores(index)
        return min(scores) if scores else None

    def doubt_order(self) -> tuple[int, list[int]]:
        """(records scored, every record index): the scored ones by their score, lowest first, then the
        rest in file order. Made again only when more records have been scored."""
        with self._lock:
            scored = len(self._scores)
            if self._order is None or self._order[0] != scored:
                lowest = {index: min(scores) for index, scores in self._scores.items()}
                ranked = sorted(lowest, key=lambda index: (lowest[index], index))
                self._order = (scored, ranked + [i for i in range(len(self.collection.records)) if i not in lowest])
            return self._order
