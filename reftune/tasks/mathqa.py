"""MathQA (Amini et al., 2019), as multiple choice (`mathqa`) and with numeric answers (`mathqa-numeric`).

Multiple-choice questions end with a line of options, "a ) 38 , b ) 27.675 , ... , e ) 14"; in 41
test records that line is a Python list literal "['a ) 12', 'b ) 15', ...]" instead, which is
rewritten in the usual form so the model sees one format. The gold is the option letter. An MCQ
answer cannot be half right, so a wrong or missing letter scores 0.0 (no partial reward); the
numeric variant is the paper's remedy for letter guessing and keeps the partial reward.
"""
from __future__ import annotations

import ast
import re

from reftune.errors import ReftuneError
from reftune.tasks.answers import CHOICE_LETTERS, parse_choice
from reftune.tasks.base import Example, Record, Task, record_shape, register_task

_OPTION_START = re.compile(r"(?:^|\s,\s)([a-e])\s?\)\s?")


def parse_options(line: str) -> tuple[tuple[str, str], ...]:
    """(letter, text) pairs from an options line; () when the line holds no options."""
    line = line.strip()
    if line.startswith("[") and line.endswith("]"):
        try:
            items = ast.literal_eval(line)
        except (ValueError, SyntaxError):
            return ()
        line = " , ".join(str(item).strip() for item in items)
    starts = list(_OPTION_START.finditer(line))
    letters = [match.group(1) for match in starts]
    if not starts or starts[0].start() != 0 or letters != list(CHOICE_LETTERS[: len(letters)]):
        return ()
    ends = [match.start() for match in starts[1:]] + [len(line)]
    return tuple((match.group(1), line[match.end():end].strip()) for match, end in zip(starts, ends))


def format_options(options: tuple[tuple[str, str], ...]) -> str:
    return " , ".join(f"{letter} ) {text}" for letter, text in options)


@record_shape("MathQA hub {Problem, Rationale, options, correct}", "Problem", "options", "correct")
def read_mathqa_hub_record(row: dict, index: int) -> Record:
    rationale = str(row.get("Rationale") or "").strip().strip('"')
    return Record(id=f"mathqa_{index}", question=f"{row['Problem'].strip()}\n{row['options']}",
                  answer=row["correct"], cots={"nl": rationale} if rationale else {})


@register_task
class MathQA(Task):
    name = "mathqa"
    hub_dataset = ("allenai/math_qa", None)
    partial_reward = False

    def example_from_row(self, row: dict, index: int, where: str) -> Example:
        example = super().example_from_row(row, index, where)
        body, _, last_line = example.question.rpartition("\n")
        options = parse_options(last_line)
        if not body or not options:
            raise ReftuneError(f"{where}: a multiple-choice question must end with a line of options "
                               f"'a ) ... , b ) ... , ...'; for questions without options use the "
                               f"task 'mathqa-numeric'")
        if example.answer not in dict(options):
            raise ReftuneError(f"{where}: the answer {example.answer!r} is not one of the options "
                               f"{[letter for letter, _ in options]}")
        question = f"{body.strip()}\n{format_options(options)}"
        return Example(example.id, question, example.answer, example.cot, options)

    def format_answer(self, answer) -> str:
        return answer

    def answer_from_text(self, text: str | None):
        return parse_choice(text)

    def answer_from_value(self, value):
        # A P-CoT program for MCQ returns the option letter.
        return parse_choice(value) if isinstance(value, str) else None

    def normalize_gold(self, gold):
        return parse_choice(gold) if isinstance(gold, str) else None

    def is_correct(self, pred, gold) -> bool:
        return pred is not None and pred == self.normalize_gold(gold)


@register_task
class MathQANumeric(Task):
    name = "mathqa-numeric"
