"""GSM8K (Cobbe et al., 2021): grade-school word problems with numeric answers.

Sources: the original JSON Lines ({question, answer: rationale with <<a*b=c>> calculator notes
ending in "#### N"}), the ReFT JSON arrays, or the hub dataset openai/gsm8k (config "main").
"""
from __future__ import annotations

import re

from reftune.tasks.base import Record, Task, record_shape, register_task

# "<<48/2=24>>": the calculator annotations of the original rationales; N-CoT targets drop them.
CALCULATOR_ANNOTATION = re.compile(r"<<[^<>]*>>")


def strip_calculator_annotations(rationale: str) -> str:
    return CALCULATOR_ANNOTATION.sub("", rationale)


@record_shape("GSM8K JSONL {question, answer: rationale ending in '#### N'}", "question", "answer")
def read_gsm8k_record(row: dict, index: int) -> Record:
    rationale, separator, final = row["answer"].rpartition("####")
    if not separator:
        raise ValueError("the answer has no final '#### N' line")
    return Record(
        id=str(row.get("id", f"gsm8k_{index}")),
        question=row["question"],
        answer=final.strip(),
        cots={"nl": strip_calculator_annotations(rationale).strip()},
    )


@register_task
class GSM8K(Task):
    name = "gsm8k"
    hub_dataset = ("openai/gsm8k", "main")
