"""The ReFT reward: terminal, from the final answer alone (Luong et al. 2024, sec. 3).

>>> from reftune.tasks import get_task
>>> task = get_task("gsm8k", style="nl")
>>> score_completions(task, ["... Therefore, the answer is: 72", "... the answer is: 70", "no idea"],
...                   ["72", "72", "72"])
[1.0, 0.1, 0.0]
"""
from __future__ import annotations

from typing import Callable, Sequence

from reftune.tasks.base import Task

CORRECT_REWARD = 1.0
PARTIAL_REWARD = 0.1  # an answer was extracted but is wrong; numeric tasks only (paper, sec. 3)
NO_ANSWER_REWARD = 0.0  # no trigger, unparsable value, or the program failed / timed out

# A user's own reward for RL, in place of score_answer: (completions, golds, examples), one of each per
# completion -> one float per completion.
RewardFn = Callable[[list, list, list], list]


def score_answer(task: Task, pred, gold) -> float:
    if pred is None:
        return NO_ANSWER_REWARD
    if task.is_correct(pred, gold):
        return CORRECT_REWARD
    # Unlike the authors' code, MCQ gets no partial reward: a guessed letter must not pay.
    return PARTIAL_REWARD if task.partial_reward else NO_ANSWER_REWARD


def score_completions(task: Task, completions: Sequence[str], golds: Sequence) -> list[float]:
    """One reward per completion; `golds` as in the data files ("72", "203.0", "b") or numbers.
    For the python style each completion is a whole program."""
    if len(completions) != len(golds):
        raise ValueError(f"{len(completions)} completions but {len(golds)} golds")
    predictions = task.extract_answers(list(completions))
    return [score_answer(task, pred, gold) for pred, gold in zip(predictions, golds)]
