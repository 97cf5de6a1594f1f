"""Export: the accepted and edited CoTs as a ReFT-format training file (`reftune sft --data` loads it)
and a CSV of every decision, written beside the data atomically.

>>> training_cot("x = 2 + 3 = 5\\nTherefore, the answer is: 5", "nl")
'x = 2 + 3 = 5'
"""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from reftune.review.journal import SampleReview
from reftune.review.records import Record
from reftune.review.sources import Source
from reftune.tasks import Task
from reftune.tasks.answers import ANSWER_TRIGGER

DECISION_COLUMNS = ("file", "id", "sample", "decision", "flagged", "edited", "status", "note")


@dataclass(frozen=True)
class ExportCounts:
    """What one input's export holds."""

    source: str        # the input's label
    number: int        # the input's Source.number (its downloads' URL)
    rows: int          # CoTs in the training file
    questions: int     # distinct questions among them
    accepted: int      # accepted samples (edited or not)
    edited: int        # edited samples exported
    rejected: int      # rejected samples, left out
    flagged: int       # flagged samples (exported only when accepted or edited)
    training_file: str
    decisions_file: str


def exported(review: SampleReview) -> bool:
    """Accepted samples, and edited ones the reviewer did not reject."""
    return review.decision == "accepted" or (review.edited and review.decision != "rejected")


def training_cot(text: str, style: str) -> str:
    """The CoT as a ReFT file holds it: the SFT target adds the answer trigger and the value back,
    so a completion's own trigger line is cut (P-CoT programs stay whole)."""
    if style == "nl" and ANSWER_TRIGGER in text:
        return text[:text.rfind(ANSWER_TRIGGER)].rstrip()
    return text.strip()


def training_rows(records: list[Record], reviews_of, task: Task) -> list[dict]:
    """ReFT rows {item_id, question, answer_cot, answer_value}; a question's second exported CoT is
    `<id>-cot2`, and so on (annotate's convention). reviews_of(record) -> one SampleReview per sample."""
    rows = []
    for record in records:
        kept = [(sample, review) for sample, review in zip(record.samples, reviews_of(record)) if exported(review)]
        for number, (sample, review) in enumerate(kept, start=1):
            text = review.text if review.edited else sample.text
            rows.append({"item_id": record.id if number == 1 else f"{record.id}-cot{number}",
                         "question": record.question, "answer_cot": training_cot(text, task.style),
                         "answer_value": task.format_answer(record.gold)})
    return rows


def decision_rows(records: list[Record], reviews_of, label: str) -> list[dict]:
    """One row per sample the reviewer touched."""
    rows = []
    for record in records:
        for number, (sample, review) in enumerate(zip(record.samples, reviews_of(record))):
            if review != SampleReview():
                rows.append({"file": label, "id": record.id, "sample": number, "decision": review.decision,
                             "flagged": review.flagged, "edited": review.edited,
                             "status": review.status if review.edited else sample.status, "note": review.note})
    return rows


def csv_text(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=DECISION_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary name beside `path`, then rename: a reader never sees half a file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def export_paths(source: Source) -> tuple[Path, Path]:
    """(training file, decisions CSV) beside the data: <stem>.reviewed.json, <stem>.decisions.csv."""
    stem = source.path.name.split(".")[0]
    return source.path.with_name(f"{stem}.reviewed.json"), source.path.with_name(f"{stem}.decisions.csv")


def export_source(source: Source, records: list[Record], reviews_of, task: Task) -> ExportCounts:
    """Write the input's training file and decisions CSV; the counts say what they hold."""
    good = [record for record in records if not record.error]
    rows = training_rows(good, reviews_of, task)
    decisions = decision_rows(good, reviews_of, source.label)
    training_path, decisions_path = export_paths(source)
    write_atomic(training_path, json.dumps(rows, indent=1, ensure_ascii=False))
    write_atomic(decisions_path, csv_text(decisions))
    return ExportCounts(
        source.label, source.number, len(rows), sum(any(map(exported, reviews_of(record))) for record in good),
        sum(d["decision"] == "accepted" for d in decisions),
        sum(bool(d["edited"]) and d["decision"] != "rejected" for d in decisions),
        sum(d["decision"] == "rejected" for d in decisions), sum(bool(d["flagged"]) for d in decisions),
        str(training_path), str(decisions_path))
