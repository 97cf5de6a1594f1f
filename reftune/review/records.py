"""Every input read into one record model: a Record is a question with its samples (model completions,
RL rollouts over steps, or the CoTs of a training file), each with its answer and status.

A row that cannot be read becomes an error record that says why; the rest of the file still loads.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

from reftune.errors import ReftuneError
from reftune.review.checking import check_cots
from reftune.review.sources import WHAT_IT_READS, InputFile, Source, choose_task, find_inputs, label_for
from reftune.selection import majority_vote
from reftune.tasks import Task, get_task
from reftune.tasks.base import json_rows

# a sample's status: the verdicts of reftune.verification, "" where nothing checked it
STATUS_OUTCOMES = {"correct": "correct", "wrong_answer": "wrong", "wrong_step": "wrong",
                   "no_answer": "no_answer", "program_error": "program_error", "timeout": "program_error"}
OUTCOMES = ("correct", "wrong", "no_answer", "program_error", "error")  # a record's, for the filters
EXTRA_COT = re.compile(r"^(?P<base>.+)-cot\d+$")  # annotate's ids for a question's 2nd, 3rd... CoT


@dataclass(frozen=True)
class Sample:
    """One chain of thought of a question, as the input holds it."""

    text: str
    answer: object = None        # the extracted answer (task's normalised form), None where none
    status: str = ""             # a verdict status (STATUS_OUTCOMES' keys) or annotate's reject reason
    reward: float | None = None  # the ReFT reward, where the input holds one
    finished: bool = True        # False: cut at max_new_tokens
    step: int | None = None      # the RL step that sampled it (rollouts)
    origin: str = "sample"       # "sample", "rollout", "training" (a ReFT file's CoT), "rejected", "written"
    detail: str = ""             # why annotate rejected it; a written CoT's check
    author: str = ""             # who wrote it (a CoT written by hand in the review), or kept a suggested one
    source: str = ""             # a written CoT's origin: "" typed by hand, else the model that suggested it


@dataclass(frozen=True)
class Record:
    """One question of one input, addressed by `index` (its position among all loaded records)."""

    index: int
    source: int                  # Source.number
    id: str
    question: str
    gold: object
    samples: tuple[Sample, ...]
    vote: object = None          # the majority answer, where the input holds one
    vote_correct: bool | None = None
    where: str = ""              # "line 3 of FILE": where the row (the first, for grouped rows) stands
    error: str = ""              # why the row could not be read; "" for a good record

    @property
    def outcome(self) -> str:
        """correct / wrong / no_answer / program_error / error: the vote's fate where there is a
        vote over several samples (the last RL step's, for rollouts), else the first sample's."""
        if self.error:
            return "error"
        if not self.samples:
            return "no_answer"
        if self.vote_correct is not None and len(self.samples) > 1:
            if self.vote_correct:
                return "correct"
            if self.vote is not None:
                return "wrong"
            last_step = self.samples[-1].step
            failed = {STATUS_OUTCOMES.get(s.status) for s in self.samples if s.step == last_step}
            return "program_error" if "program_error" in failed else "no_answer"
        return STATUS_OUTCOMES.get(self.samples[0].status, "no_answer")


@dataclass(frozen=True)
class RawRow:
    """One row of a file: the parsed object, or None and why it could not be parsed."""

    row: dict | None
    where: str
    error: str = ""


@dataclass
class TrainingQuestion:
    """A training file's question while its rows are read: its CoTs gather here."""

    question: str
    gold: object
    where: str                   # where its first row stands
    samples: list[Sample] = field(default_factory=list)


@dataclass(frozen=True)
class Collection:
    """All the inputs of one review session."""

    sources: tuple[Source, ...]
    records: tuple[Record, ...]
    tasks: dict  # Source.number -> Task


def read_raw_rows(path: Path) -> list[RawRow]:
    """The rows of a JSON array or JSON Lines file; unreadable rows come back with their error."""
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReftuneError(f"cannot read {path}: {exc}") from None
    return [RawRow(None, where, error) if error else as_object(row, where)
            for row, where, error in json_rows(text, path.name)]


def as_object(row, where: str) -> RawRow:
    if isinstance(row, dict):
        return RawRow(row, where)
    return RawRow(None, where, f"a {type(row).__name__}, not a JSON object")


def sample_status(answer, correct: bool, style: str) -> str:
    """A samples file's verdict: a P-CoT program that gave no answer failed to run or returned nothing."""
    if correct:
        return "correct"
    if answer is None:
        return "program_error" if style == "python" else "no_answer"
    return "wrong_answer"


def samples_of_row(row: dict, style: str, step: int | None, origin: str) -> list[Sample]:
    texts = [str(text) for text in row["samples"]]
    answers = list(row.get("answers") or [None] * len(texts))
    rewards = list(row.get("rewards") or [None] * len(texts))
    correct = list(row.get("correct") or [reward == 1.0 for reward in rewards])
    finished = list(row.get("finished") or [True] * len(texts))
    if not len(texts) == len(answers) == len(rewards) == len(correct) == len(finished):
        raise ValueError("samples, answers, rewards, correct and finished differ in length")
    return [Sample(text, answer, sample_status(answer, ok, style), reward, bool(done), step, origin)
            for text, answer, reward, ok, done in zip(texts, answers, rewards, correct, finished)]


def vote_of(row: dict, answers: list, task: Task) -> tuple[object, bool]:
    """The row's majority vote and whether it is right: as written, else counted here (the RL
    stage's rollout rows carry no vote)."""
    if "vote" in row and "vote_correct" in row:
        return row["vote"], row["vote_correct"]
    vote = majority_vote(answers, task.is_correct)
    return vote, vote is not None and task.is_correct(vote, row.get("gold"))


def error_record(raw: RawRow, source: int, error: str) -> Record:
    return Record(0, source, raw.where, "", None, (), where=raw.where, error=error)


def samples_records(raw_rows: list[RawRow], source: int, task: Task) -> list[Record]:
    """A samples file: one question per row."""
    records = []
    for raw in raw_rows:
        try:
            row = raw.row
            if row is None:
                raise ValueError(raw.error)
            samples = tuple(samples_of_row(row, task.style, None, "sample"))
            vote, vote_correct = vote_of(row, [s.answer for s in samples], task)
            records.append(Record(0, source, str(row["id"]), str(row["question"]), row.get("gold"), samples,
                                  vote, vote_correct, raw.where))
        except (KeyError, TypeError, ValueError) as exc:
            records.append(error_record(raw, source, describe_error(exc)))
    return records


def rollouts_records(raw_rows: list[RawRow], source: int, task: Task) -> list[Record]:
    """An RL run's rollouts: the rows of one question (one per logged step) become one record whose
    samples run in step order; its vote is the last step's."""
    grouped: dict[str, list[tuple[RawRow, list[Sample]]]] = defaultdict(list)
    errors = []
    for raw in raw_rows:
        try:
            row = raw.row
            if row is None:
                raise ValueError(raw.error)
            grouped[str(row["id"])].append((raw, samples_of_row(row, task.style, int(row["step"]), "rollout")))
        except (KeyError, TypeError, ValueError) as exc:
            errors.append(error_record(raw, source, describe_error(exc)))
    records = []
    for record_id, rows in grouped.items():
        rows.sort(key=lambda pair: int(pair[0].row["step"]))
        first, (last, last_samples) = rows[0][0], rows[-1]
        samples = tuple(sample for _, row_samples in rows for sample in row_samples)
        vote, vote_correct = vote_of(last.row, [s.answer for s in last_samples], task)
        records.append(Record(0, source, record_id, str(first.row.get("question", "")), first.row.get("gold"),
                              samples, vote, vote_correct, first.where))
    return records + errors


def training_records(raw_rows: list[RawRow], rejects: list[RawRow], source: int, task: Task) -> list[Record]:
    """A ReFT-format file (or an annotate folder): a question's CoTs (`id`, `id-cot2`, ...) are its
    samples, checked here; annotate's rejected CoTs follow them, with annotate's reason."""
    questions: dict[str, TrainingQuestion] = {}
    errors = []
    for raw, origin in [(raw, "training") for raw in raw_rows] + [(raw, "rejected") for raw in rejects]:
        try:
            add_training_row(questions, raw, origin, task)
        except (KeyError, TypeError, ValueError) as exc:
            errors.append(error_record(raw, source, describe_error(exc)))
    to_check = [(q, n) for q in questions.values() for n, s in enumerate(q.samples) if s.origin == "training"]
    verdicts = check_cots(task, [q.samples[n].text for q, n in to_check], [q.gold for q, _ in to_check],
                          training=True)
    for (question, number), verdict in zip(to_check, verdicts):
        question.samples[number] = Sample(question.samples[number].text, verdict.answer, verdict.status,
                                          origin="training", detail=verdict.detail)
    records = [Record(0, source, record_id, q.question, q.gold, tuple(q.samples), where=q.where)
               for record_id, q in questions.items()]
    return records + errors


def add_training_row(questions: dict[str, TrainingQuestion], raw: RawRow, origin: str, task: Task) -> None:
    row = raw.row
    if row is None:
        raise ValueError(raw.error)
    item_id = str(row["item_id"])
    match = EXTRA_COT.match(item_id)
    record_id = match.group("base") if match else item_id
    gold = task.normalize_gold(row["answer_value"])
    if gold is None:
        raise ValueError(f"answer_value {row['answer_value']!r} is not an answer of {task.name}")
    question = questions.setdefault(record_id, TrainingQuestion(str(row["question"]), gold, raw.where))
    text = str(row.get("answer_cot") or "")
    if origin == "rejected":
        question.samples.append(Sample(text, status=str(row.get("reason", "")), origin="rejected",
                                       detail=str(row.get("detail", ""))))
    elif text:
        question.samples.append(Sample(text, origin="training"))


def describe_error(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing key {exc.args[0]!r}"
    return str(exc) or type(exc).__name__


def load_collection(paths: list[str | Path], task: str | None = None, style: str | None = None) -> Collection:
    """Read every PATH: find its files, choose each file's task, read its records."""
    inputs = [found for path in paths for found in find_inputs(path)]
    if not inputs:
        raise ReftuneError("nothing to review: give at least one PATH")
    sources, records, tasks = [], [], {}
    for number, given in enumerate(inputs):
        raw = read_raw_rows(given.path)
        rejects = [row for extra in given.extra for row in read_raw_rows(extra)]
        check_recognised(given, raw, rejects)
        choice = choose_task(given.path, *ids_and_texts(raw + rejects), task, style)
        tasks[number] = task_of(choice, given.path)
        sources.append(Source(number, given, choice, label_for(given.path)))
        records += unique_ids(read_records(given, raw, rejects, number, tasks[number]))
    numbered = tuple(replace(record, index=index) for index, record in enumerate(records))
    return Collection(tuple(sources), numbered, tasks)


def task_of(choice, path: Path) -> Task:
    try:
        return get_task(choice.task, style=choice.style, **choice.options)
    except (TypeError, ReftuneError) as exc:  # an option the task does not take, from the run's config
        raise ReftuneError(f"task {choice.task} of {path} (from {choice.origin}): {exc}; pass --task and "
                           f"--style to read it without those options") from None


def check_recognised(given: InputFile, raw: list[RawRow], rejects: list[RawRow]) -> None:
    """One clear line for a file that is none of the inputs (rows of another format, or no rows);
    single bad rows of a good file become error records instead."""
    rows = [r.row for r in raw + rejects if r.row is not None]
    if not raw and not rejects:
        raise ReftuneError(f"{given.path} holds no rows: nothing to review")
    if given.kind in ("reft", "annotate") and not any("question" in row and "answer_value" in row for row in rows):
        keys = sorted(rows[0]) if rows else "none (no line is a JSON object)"
        raise ReftuneError(f"{given.path} is not one of the inputs review reads (its rows' keys: {keys}); "
                           f"give {WHAT_IT_READS}")


def read_records(given: InputFile, raw: list[RawRow], rejects: list[RawRow], number: int, task: Task) -> list[Record]:
    if given.kind == "samples":
        return samples_records(raw, number, task)
    if given.kind == "rollouts":
        return rollouts_records(raw, number, task)
    return training_records(raw, rejects, number, task)


def unique_ids(records: list[Record]) -> list[Record]:
    """A repeated id becomes `id#2`, `id#3` (in file order): the journal addresses records by id."""
    seen: dict[str, int] = {}
    renamed = []
    for record in records:
        seen[record.id] = seen.get(record.id, 0) + 1
        renamed.append(replace(record, id=f"{record.id}#{seen[record.id]}") if seen[record.id] > 1 else record)
    return renamed


def ids_and_texts(raw: list[RawRow]) -> tuple[list[str], list[str]]:
    """Ids and CoT texts of the first readable rows: what the task and style are guessed from."""
    rows = [r.row for r in raw[:200] if r.row is not None]
    ids = [str(row.get("id", row.get("item_id", ""))) for row in rows]
    texts = [str(text) for row in rows for text in (row.get("samples") or [row.get("answer_cot") or ""])]
    return ids, texts

