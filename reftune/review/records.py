"""Every input read into one record model: a Record is a question with its samples (model completions,
RL rollouts over steps, or the CoTs of a training file), each with its answer and status.

A row that cannot be read becomes an error record that says why; the rest of the file still loads.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from reftune.errors import ReftuneError
from reftune.review.checking import check_cots
from reftune.review.sources import WHAT_IT_READS, InputFile, Source, TaskChoice, choose_task, find_inputs, label_for
from reftune.review.tail import Tail
from reftune.scoring.selection import majority_vote
from reftune.tasks import Task, get_task
from reftune.tasks.base import json_rows

# a sample's status: the verdicts of reftune.scoring.verification, "" where nothing checked it
STATUS_OUTCOMES = {"correct": "correct", "wrong_answer": "wrong", "wrong_step": "wrong",
                   "no_answer": "no_answer", "program_error": "program_error", "timeout": "program_error"}
OUTCOMES = ("correct", "wrong", "no_answer", "program_error", "error")  # a record's, for the filters
FIRST_BYTES = 64 * 1024  # of a samples file, read before the app starts: a first page of rows, and the task
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
class Change:
    """What one read of an input brought: new records (indexed after those before them) and the
    records of rollouts questions that grew (their later steps; same index)."""

    added: tuple[Record, ...] = ()
    grown: tuple[Record, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.grown)


@dataclass
class Reading:
    """Where the reading of one JSON Lines input (samples or rollouts) stands: it is read a piece
    at a time, and read again for what it gains."""

    tail: Tail
    seen: dict = field(default_factory=dict)   # samples: id -> rows with it so far (the 2nd becomes id#2)
    steps: dict = field(default_factory=dict)  # rollouts: id -> its rows so far, (RawRow, samples), in step order


@dataclass
class Collection:
    """All the inputs of one review session, as far as they are read. Records only ever come after
    those read before them (a record's index never changes); a rollouts question that gains steps is
    replaced by its longer record at the same index."""

    sources: tuple[Source, ...]
    tasks: dict                                    # Source.number -> Task
    records: list[Record] = field(default_factory=list)
    ids: dict = field(default_factory=dict)        # (source, id) -> index, of the good records
    readings: dict = field(default_factory=dict)   # Source.number -> Reading, of the JSON Lines inputs
    version: int = 0                               # bumped by every change to the records
    problems: list[str] = field(default_factory=list)  # inputs no longer followed, and why

    def add(self, change: Change) -> None:
        for record in change.added:
            self.records.append(record)
            if not record.error:
                self.ids[record.source, record.id] = record.index
        for record in change.grown:
            self.records[record.index] = record
        self.version += 1

    def read(self, source: int, limit: int | None = None) -> Change:
        """The records of the next complete lines of a JSON Lines input (about `limit` bytes of
        them; a rollouts file is read to its end, so that a question's steps come together)."""
        reading = self.readings[source]
        kind, task = self.sources[source].kind, self.tasks[source]
        try:
            raw = raw_rows(reading.tail.read(limit if kind == "samples" else None), self.sources[source].path.name)
        except OSError as exc:  # removed or unreadable since: what was read stays
            reading.tail.rewritten = True
            self.problems.append(f"cannot read {reading.tail.path} any more ({exc}): what was read stays")
            return Change()
        if reading.tail.rewritten and not raw:
            self.problems.append(f"{reading.tail.path} was rewritten (a resumed run cuts its logs back to its "
                                 f"checkpoint): restart the review to read it again")
        if kind == "samples":
            return samples_change(raw, reading, source, task, len(self.records))
        return rollouts_change(raw, reading, source, task, len(self.records), self.ids)

    def unread(self) -> int | None:
        """The first input not read to its end yet; None when every one is."""
        return next((number for number, reading in self.readings.items() if not reading.tail.at_end), None)

    def grown(self) -> list[int]:
        """The inputs whose files changed since they were last read (a stat of each)."""
        return [number for number, reading in self.readings.items() if reading.tail.grew()]

    def fraction_read(self) -> float:
        """The share of the inputs' bytes read so far."""
        tails = [reading.tail for reading in self.readings.values()]
        total = sum(max(tail.size, tail.read_to) for tail in tails if not tail.rewritten)
        done = sum(tail.read_to + tail.unfinished for tail in tails if not tail.rewritten)
        return 1.0 if total == 0 or self.unread() is None else min(done / total, 1.0)


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


def error_record(raw: RawRow, source: int, error: str, index: int = 0) -> Record:
    return Record(index, source, raw.where, "", None, (), where=raw.where, error=error)


def raw_rows(lines: list[tuple[int, bytes]], label: str) -> list[RawRow]:
    """The rows of JSON Lines (line number, line); a line that is no JSON object comes back with why."""
    found = []
    for number, line in lines:
        where = f"line {number} of {label}"
        try:
            found.append(as_object(json.loads(line.decode("utf-8")), where))
        except UnicodeDecodeError:
            found.append(RawRow(None, where, "not UTF-8 text"))
        except json.JSONDecodeError as exc:
            # json's own messages may end in "at" ("Unterminated string starting at")
            found.append(RawRow(None, where, f"not valid JSON ({exc.msg.removesuffix(' at')} at column {exc.colno})"))
    return found


def sample_record(raw: RawRow, index: int, source: int, task: Task) -> Record:
    """One row of a samples file: one question."""
    try:
        row = raw.row
        if row is None:
            raise ValueError(raw.error)
        samples = tuple(samples_of_row(row, task.style, None, "sample"))
        vote, vote_correct = vote_of(row, [s.answer for s in samples], task)
        return Record(index, source, str(row["id"]), str(row["question"]), row.get("gold"), samples,
                      vote, vote_correct, raw.where)
    except (KeyError, TypeError, ValueError) as exc:
        return error_record(raw, source, describe_error(exc), index)


def samples_change(raw_rows: list[RawRow], reading: Reading, source: int, task: Task, first: int) -> Change:
    """New rows of a samples file: one record each, indexed from `first`; a repeated id becomes
    `id#2`, `id#3` (in file order: the journal addresses records by id)."""
    records = []
    for offset, raw in enumerate(raw_rows):
        record = sample_record(raw, first + offset, source, task)
        if not record.error:
            seen = reading.seen[record.id] = reading.seen.get(record.id, 0) + 1
            record = replace(record, id=f"{record.id}#{seen}") if seen > 1 else record
        records.append(record)
    return Change(tuple(records))


def rollouts_change(raw_rows: list[RawRow], reading: Reading, source: int, task: Task, first: int,
                    ids: dict) -> Change:
    """New rows of an RL run's rollouts: a question's rows (one per logged step) make one record
    whose samples run in step order; a question seen before grows (same index), a new one is added
    from `first`, then the unreadable rows."""
    touched: dict[str, None] = {}  # the questions these rows belong to, in order of first appearance
    errors = []
    for raw in raw_rows:
        try:
            row = raw.row
            if row is None:
                raise ValueError(raw.error)
            parsed = (raw, samples_of_row(row, task.style, int(row["step"]), "rollout"))
        except (KeyError, TypeError, ValueError) as exc:
            errors.append((raw, describe_error(exc)))
            continue
        reading.steps.setdefault(str(row["id"]), []).append(parsed)
        touched[str(row["id"])] = None
    added, grown = [], []
    for record_id in touched:
        rows = reading.steps[record_id]
        rows.sort(key=lambda pair: int(pair[0].row["step"]))  # stable: a step logged twice keeps file order
        known = ids.get((source, record_id))
        record = rollout_record(first + len(added) if known is None else known, source, record_id, rows, task)
        (added if known is None else grown).append(record)
    added += [error_record(raw, source, error, first + len(added) + n) for n, (raw, error) in enumerate(errors)]
    return Change(tuple(added), tuple(grown))


def rollout_record(index: int, source: int, record_id: str, rows: list, task: Task) -> Record:
    """One question of the rollouts from its rows, (RawRow, samples) in step order; its vote is the
    last step's (the RL stage's rows carry none, so it is counted here)."""
    first, (last, last_samples) = rows[0][0], rows[-1]
    samples = tuple(sample for _, row_samples in rows for sample in row_samples)
    vote, vote_correct = vote_of(last.row, [s.answer for s in last_samples], task)
    return Record(index, source, record_id, str(first.row.get("question", "")), first.row.get("gold"),
                  samples, vote, vote_correct, first.where)


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


def open_collection(paths: list[str | Path], task: str | None = None, style: str | None = None,
                    first_bytes: int | None = FIRST_BYTES) -> Collection:
    """Find every PATH's files, choose each file's task and read what comes first: a samples file's
    first `first_bytes` (the rest is read by Collection.read, a piece at a time), every other input
    whole. Whatever cannot work is refused here, in one line."""
    inputs = [found for path in paths for found in find_inputs(path)]
    if not inputs:
        raise ReftuneError("nothing to review: give at least one PATH")
    collection = Collection((), {})
    for number, given in enumerate(inputs):
        if given.kind in ("samples", "rollouts"):
            open_lines(collection, given, number, task, style, first_bytes)
        else:
            open_whole(collection, given, number, task, style)
    return collection


def load_collection(paths: list[str | Path], task: str | None = None, style: str | None = None) -> Collection:
    """Every PATH read to its end (what a script or a test wants; the app reads big files as it goes)."""
    collection = open_collection(paths, task, style, first_bytes=None)
    while (source := collection.unread()) is not None:
        collection.add(collection.read(source))
    return collection


def open_lines(collection: Collection, given: InputFile, number: int, task: str | None, style: str | None,
               first_bytes: int | None) -> None:
    """A samples or rollouts file: its first rows tell its task; they are its first records."""
    reading = Reading(Tail(given.path))
    try:
        raw = raw_rows(reading.tail.read(first_bytes if given.kind == "samples" else None), given.path.name)
    except OSError as exc:
        raise ReftuneError(f"cannot read {given.path}: {exc}") from None
    if not raw and reading.tail.at_end:
        raise ReftuneError(f"{given.path} holds no rows: nothing to review")
    add_source(collection, given, number, choose_task(given.path, *ids_and_texts(raw), task, style))
    collection.readings[number] = reading
    if given.kind == "samples":
        collection.add(samples_change(raw, reading, number, collection.tasks[number], len(collection.records)))
    else:
        collection.add(rollouts_change(raw, reading, number, collection.tasks[number], len(collection.records),
                                       collection.ids))


def open_whole(collection: Collection, given: InputFile, number: int, task: str | None, style: str | None) -> None:
    """A training file or an annotate folder, read and checked whole."""
    raw = read_raw_rows(given.path)
    rejects = [row for extra in given.extra for row in read_raw_rows(extra)]
    check_recognised(given, raw, rejects)
    add_source(collection, given, number, choose_task(given.path, *ids_and_texts(raw + rejects), task, style))
    records = unique_ids(training_records(raw, rejects, number, collection.tasks[number]))
    first = len(collection.records)
    collection.add(Change(tuple(replace(record, index=first + n) for n, record in enumerate(records))))


def add_source(collection: Collection, given: InputFile, number: int, choice: TaskChoice) -> None:
    collection.tasks[number] = task_of(choice, given.path)
    collection.sources += (Source(number, given, choice, label_for(given.path)),)


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

