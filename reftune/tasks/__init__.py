"""Datasets as tasks: loading, prompt and target, answer extraction, correctness.

>>> task = get_task("arithmetic", style="nl")
>>> example = task.load("dev")[0]
>>> task.is_correct(task.extract_answers([task.target(example)])[0], example.answer)
True
"""
from reftune.tasks.base import STYLES, TASKS, Example, Task, get_task

# Importing the dataset modules registers their tasks and record shapes (ReFT's shape, registered
# by base, is tried first; then GSM8K, SVAMP and MathQA's).
from reftune.tasks import gsm8k, svamp, mathqa, arithmetic  # noqa: E402,F401  isort: skip

__all__ = ["Example", "STYLES", "TASKS", "Task", "get_task"]
