"""Re-checking CoTs with the one verification function every command uses (annotate, review,
`reftune check`): reftune.scoring.verification.verify_cots. Programs run in the sandbox.

>>> from reftune.tasks import get_task
>>> with_stated_answer(get_task("gsm8k"), "2 + 3 = 5", 5.0)
'2 + 3 = 5\\nTherefore, the answer is: 5'
"""
from __future__ import annotations

from reftune.scoring.verification import Verdict, verify_cots
from reftune.tasks import Task
from reftune.tasks.answers import ANSWER_TRIGGER, answer_text

# samples whose text is a training file's CoT: the SFT target adds the answer to it
TRAINING_ORIGINS = ("training", "rejected")


def with_stated_answer(task: Task, cot: str, gold) -> str:
    """A training file's N-CoT as its SFT target reads: one without an answer of its own gets the
    trigger and the gold, so that what is checked is its steps. Programs are checked as written."""
    if task.style == "nl" and answer_text(cot) is None:
        return f"{cot.strip()}\n{ANSWER_TRIGGER} {task.format_answer(gold)}"
    return cot


def check_cots(task: Task, cots: list[str], golds: list, training: bool = False) -> list[Verdict]:
    """One verdict per CoT (one sandbox call for all of them). training: the CoTs come from a
    training file (see with_stated_answer)."""
    if not cots:
        return []
    if training:
        cots = [with_stated_answer(task, cot, gold) for cot, gold in zip(cots, golds)]
    return verify_cots(task, list(cots), list(golds))


def check_cot(task: Task, cot: str, gold, training: bool = False) -> Verdict:
    return check_cots(task, [cot], [gold], training)[0]
