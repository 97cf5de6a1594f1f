"""SVAMP (Patel et al., 2021): one-equation word problems with variations that trip shallow models.

Sources: the ReFT JSON arrays (svamp_nl.json, svamp_python_sdp.json, svamp_test_set.json), the
original SVAMP.json ({Body, Question, Equation, Answer}), or the hub dataset ChilleD/SVAMP. From
the original format both CoT styles are derived from the equation.
"""
from __future__ import annotations

from reftune.tasks.answers import format_number
from reftune.tasks.base import Record, Task, record_shape, register_task


@record_shape("SVAMP JSON {Body, Question, Equation, Answer}", "Body", "Question", "Answer")
def read_svamp_record(row: dict, index: int) -> Record:
    question = f"{row['Body'].strip()} {row['Question'].strip()}"
    equation = str(row.get("Equation") or "").strip()
    cots = {}
    if equation:
        value = format_number(float(row["Answer"]))
        cots["nl"] = f"Computing {equation} gives {value}."
        cots["python"] = f'def solution():\n    """{question}"""\n    result = {equation}\n    return result'
    return Record(id=str(row.get("ID", f"svamp_{index}")), question=question,
                  answer=row["Answer"], cots=cots)


@register_task
class SVAMP(Task):
    name = "svamp"
    hub_dataset = ("ChilleD/SVAMP", None)
