"""Re-checking CoTs with the one verification function every command uses (annotate, review,
`reftune check`): reftune.verification.verify_cots. Programs run in the sandbox."""
from __future__ import annotations

from reftune.tasks import Task
from reftune.verification import Verdict, verify_cots


def check_cots(task: Task, cots: list[str], golds: list) -> list[Verdict]:
    """One verdict per CoT (one sandbox call for all of them); nothing to run for no CoTs."""
    return verify_cots(task, list(cots), list(golds)) if cots else []


def check_cot(task: Task, cot: str, gold) -> Verdict:
    return check_cots(task, [cot], [gold])[0]
