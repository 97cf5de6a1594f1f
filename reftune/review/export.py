"""Export: the accepted and edited CoTs that pass the check as a ReFT-format training file (`reftune
sft --data` loads it) and a CSV of every decision, written beside the data atomically. A CoT that
fails the check is left out unless the reviewer asked for it (`--include-failing`); either way the
counts say how many there were.

>>> training_cot("x = 2 + 3 = 5\\nTherefore, the answer is: 5", "nl")
'x = 2 + 3 = 5'
>>> [base for base, _ in zip(base_names(Path("runs/run.v1.jsonl")), range(3))]
['run.v1', 'run.v1.jsonl', 'run.v1.jsonl-2']
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from reftune.review.journal import SampleReview
from reftune.review.records import Record
from reftune.review.sources import Source
from reftune.scoring.verification import Verdict
from reftune.tasks import Task
from reftune.tasks.answers import ANSWER_TRIGGER

# reviewer: who decided; settled: the sample's decision over all reviewers and how ("accepted (agreed)")
DECISION_COLUMNS = ("file", "id", "sample", "decision", "flagged", "edited", "status", "note", "reviewer", "settled")
TRAINING_SUFFIX, DECISIONS_SUFFIX = ".reviewed.json", ".decisions.csv"


@dataclass(frozen=True)
class KeptSample:
    """A sample the reviewer kept (accepted, or edited and not rejected), with its check."""

    record: Record
    number: int        # the sample's index in the record
    text: str          # the edited text, else the sample as written
    verdict: Verdict   # the check of `text`

    @property
    def failing(self) -> bool:
        return not self.verdict.ok

    def describe(self) -> str:
        """'svamp_1 #1: timeout': how the page and the export name a failing sample."""
        return f"{self.record.id} #{self.number + 1}: {self.verdict.status.replace('_', ' ')}"


@dataclass(frozen=True)
class ExportPaths:
    """Where one input's export goes: beside the data, never onto an input or another input's export."""

    training: Path
    decisions: Path


@dataclass(frozen=True)
class ExportCounts:
    """What one input's export holds."""

    source: str        # the input's label
    number: int        # the input's Source.number (its downloads' URL)
    rows: int          # CoTs in the training file
    questions: int     # distinct questions among them
    accepted: int      # accepted samples (edited or not)
    edited: int        # edited samples kept (not rejected)
    rejected: int      # rejected samples, left out
    flagged: int       # flagged samples (exported only when accepted or edited)
    failing: tuple[str, ...]  # kept samples that fail the check (KeptSample.describe)
    failing_included: bool    # --include-failing: they are in the training file; else left out
    training_file: str
    decisions_file: str
    agreed: int = 0           # samples whose reviewers agreed (one reviewer: every decided sample)
    adjudicated: int = 0      # samples the adjudicator settled
    majority: int = 0         # disagreements taken by majority (--export-majority)
    unsettled: int = 0        # disagreements nobody settled: left out


def exported(review: SampleReview) -> bool:
    """Accepted samples, and edited ones the reviewer did not reject."""
    return review.decision == "accepted" or (review.edited and review.decision != "rejected")


def training_cot(text: str, style: str) -> str:
    """The CoT as a ReFT file holds it: the SFT target adds the answer trigger and the value back,
    so a completion's own trigger line is cut (P-CoT programs stay whole)."""
    if style == "nl" and ANSWER_TRIGGER in text:
        return text[:text.rfind(ANSWER_TRIGGER)].rstrip()
    return text.strip()


def training_rows(kept: list[KeptSample], task: Task, include_failing: bool = False) -> list[dict]:
    """ReFT rows {item_id, question, answer_cot, answer_value} of the kept samples that pass the check
    (all of them with include_failing), in the order given; a question's second exported CoT is
    `<id>-cot2`, and so on (annotate's convention)."""
    rows, written = [], {}
    for sample in kept:
        if sample.failing and not include_failing:
            continue
        record = sample.record
        number = written[record.id] = written.get(record.id, 0) + 1
        rows.append({"item_id": record.id if number == 1 else f"{record.id}-cot{number}",
                     "question": record.question, "answer_cot": training_cot(sample.text, task.style),
                     "answer_value": task.format_answer(record.gold)})
    return rows


def decision_rows(records: list[Record], samples_of, reviews_of, label: str, reviewers: list[str],
                  settled: dict) -> list[dict]:
    """One row per reviewer and sample they touched. samples_of(record) -> its samples (the written
    ones too); reviews_of(record, reviewer) -> the reviewer's reviews of them; settled: (record index,
    sample) -> its Settlement."""
    rows = []
    for record in records:
        samples = samples_of(record)
        for reviewer in reviewers:
            for number, review in enumerate(reviews_of(record, reviewer)):
                if review == SampleReview():
                    continue
                status = review.status if review.edited else samples[number].status
                outcome = settled.get((record.index, number))
                rows.append({"file": label, "id": record.id, "sample": number, "decision": review.decision,
                             "flagged": review.flagged, "edited": review.edited, "status": status, "note": review.note,
                             "reviewer": reviewer,
                             "settled": f"{outcome.decision or 'open'} ({outcome.how})" if outcome else ""})
    return rows


def csv_text(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=DECISION_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary name beside `path`, then rename: a reader never sees half a file. The
    file is created with the mode the umask gives (0644 as a rule), as any other file the user writes."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def base_names(data: Path):
    """Names an input's export may start with, the plainest first: the data file's name without its
    extension (run.v1.jsonl -> run.v1), then the whole name, then the whole name numbered."""
    yield data.stem
    yield data.name
    yield from (f"{data.name}-{number}" for number in itertools.count(2))


def export_paths(sources: tuple[Source, ...] | list[Source]) -> dict[int, ExportPaths]:
    """Each input's export files (Source.number -> paths), beside its data: <name>.reviewed.json and
    <name>.decisions.csv. No export lands on a file the review reads (an input, the rejects beside
    it, a journal: reviewing an earlier export is reviewing an input) or on another input's export."""
    read = {where.resolve() for source in sources
            for where in (source.path, *source.input.extra, source.journal_path)}
    taken: set[Path] = set()
    chosen = {}
    for source in sources:
        for base in base_names(source.path):
            paths = ExportPaths(source.path.with_name(base + TRAINING_SUFFIX),
                                source.path.with_name(base + DECISIONS_SUFFIX))
            resolved = {paths.training.resolve(), paths.decisions.resolve()}
            if not resolved & (read | taken):
                break
        taken |= resolved
        chosen[source.number] = paths
    return chosen


def export_source(source: Source, kept: list[KeptSample], decisions: list[dict], paths: ExportPaths, task: Task,
                  include_failing: bool = False, settled: dict | None = None) -> ExportCounts:
    """Write the input's training file (its kept samples that pass the check; all of them with
    include_failing) and decisions CSV; the counts say what they hold, what was left out, and how
    many decisions were settled each way (settled: Settlement.how -> samples)."""
    settled = settled or {}
    rows = training_rows(kept, task, include_failing)
    write_atomic(paths.training, json.dumps(rows, indent=1, ensure_ascii=False))
    write_atomic(paths.decisions, csv_text(decisions))
    written = [sample for sample in kept if include_failing or not sample.failing]
    return ExportCounts(
        source.label, source.number, len(rows), len({sample.record.id for sample in written}),
        sum(d["decision"] == "accepted" for d in decisions),
        sum(bool(d["edited"]) and d["decision"] != "rejected" for d in decisions),
        sum(d["decision"] == "rejected" for d in decisions), sum(bool(d["flagged"]) for d in decisions),
        tuple(sample.describe() for sample in kept if sample.failing), include_failing,
        str(paths.training), str(paths.decisions), settled.get("agreed", 0), settled.get("adjudicated", 0),
        settled.get("majority", 0), settled.get("unsettled", 0))
