"""The files an annotation run leaves beside its journal, all rebuilt from the journal's replay and
written atomically: annotated.json (ReFT format), rejects.jsonl and annotate.json (the summary)."""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from reftune.annotate.journal import REQUEST_FAILED, AnnotationState

ANNOTATED_NAME = "annotated.json"
REJECTS_NAME = "rejects.jsonl"
SUMMARY_NAME = "annotate.json"
RUN_RECORD = "run.json"  # which command made the folder: the name the training stages give it


def extra_cot_id(item_id: str, number: int) -> str:
    """The id of a question's `number`-th CoT: the first keeps the source id, then <id>-cot2, ..."""
    return item_id if number == 1 else f"{item_id}-cot{number}"


def annotated_records(task, examples: list, state: AnnotationState) -> list[dict]:
    """ReFT-format records ({item_id, question, answer_cot, answer_value}), questions in source order,
    each question's kept CoTs by sample index."""
    records = []
    for example in examples:
        for number, event in enumerate(state.kept(example.id), start=1):
            records.append({"item_id": extra_cot_id(example.id, number), "question": example.question,
                            "answer_cot": event["answer_cot"], "answer_value": task.format_answer(example.answer)})
    return records


def reject_records(task, examples: list, state: AnnotationState) -> list[dict]:
    """One row per rejected CoT (its latest verdict), questions in source order."""
    return [{"item_id": example.id, "question": example.question,
             "answer_value": task.format_answer(example.answer), "answer_cot": event.get("answer_cot", ""),
             "reason": event["reason"], "detail": event.get("detail", "")}
            for example in examples for event in state.verdicts_of([example.id]) if event["event"] == "rejected"]


def summarize(config, examples: list, state: AnnotationState, seconds: float) -> dict:
    """Coverage (questions with at least one kept CoT), CoTs per question, requests, tokens, wall time,
    cost (with a price) and the count of each verdict."""
    verdicts = state.verdicts_of([example.id for example in examples])
    kept = [event for event in verdicts if event.get("kept")]
    covered = len({event["item_id"] for event in kept})
    summary = {
        "task": config.task, "style": config.style, "source": config.source, "data": config.data,
        "questions": len(examples), "covered": covered,
        "coverage": round(covered / len(examples), 4) if examples else 0.0,
        "cots": len(kept), "cots_per_question": round(len(kept) / len(examples), 3) if examples else 0.0,
        "cots_per_covered_question": round(len(kept) / covered, 3) if covered else 0.0,
        "requests": state.requests, "tokens_in": state.tokens_in, "tokens_out": state.tokens_out,
        "wall_seconds": round(state.seconds + seconds, 2),
        "verdicts": dict(Counter(event["reason"] for event in verdicts).most_common()),
        "verified_not_kept": sum(1 for event in verdicts if event["event"] == "verified" and not event.get("kept")),
        "requests_failed": sum(1 for event in verdicts if event["reason"] == REQUEST_FAILED),
    }
    if config.price_per_1k is not None:
        summary["cost"] = round((state.tokens_in + state.tokens_out) / 1000 * config.price_per_1k, 4)
    return summary


def write_outputs(folder: Path, config, task, examples: list, state: AnnotationState, seconds: float) -> dict:
    write_atomically(folder / ANNOTATED_NAME, json.dumps(annotated_records(task, examples, state), indent=1,
                                                         ensure_ascii=False) + "\n")
    rejects = reject_records(task, examples, state)
    write_atomically(folder / REJECTS_NAME, "".join(json.dumps(row) + "\n" for row in rejects))
    summary = summarize(config, examples, state, seconds)
    write_atomically(folder / SUMMARY_NAME, json.dumps(summary, indent=1) + "\n")
    return summary


def write_atomically(path: Path, text: str) -> None:
    """Write to a temporary name, then rename: a reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
