"""`arithmetic`: reftune's own generator of grade-school word problems with several steps.

No download: this is the data of the demo and the tests. A problem is a starting amount followed
by events (gains and losses, some of them in groups: "3 bags with 5 apples in each"). Every event
adds to or takes from one total, so the events can be combined in any order: one question admits
several correct reasoning paths ("in story order", "gains and losses apart", "one expression"),
each written as an N-CoT and as a P-CoT. An example's gold CoT is one path, drawn by the seed, as
a dataset with one annotated CoT per question has (the setting where the paper finds SFT weak).

Splits cannot overlap: a problem's split is fixed by a hash of its question text (80% train, 10%
dev, 10% test of the space), and each split draws only problems whose hash falls in its bucket.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from reftune.errors import ReftuneError
from reftune.tasks.base import Example, Task, register_task

SPLIT_BUCKETS = {"train": range(0, 80), "dev": range(80, 90), "test": range(90, 100)}
STRATEGIES = ("in_order", "gains_and_losses", "one_expression")

NAMES = (("Ava", "she"), ("Ben", "he"), ("Chloe", "she"), ("Diego", "he"), ("Emma", "she"),
         ("Farid", "he"), ("Grace", "she"), ("Hugo", "he"), ("Isla", "she"), ("Jamal", "he"),
         ("Keiko", "she"), ("Liam", "he"), ("Maya", "she"), ("Noah", "he"), ("Olivia", "she"),
         ("Pablo", "he"), ("Quinn", "she"), ("Ravi", "he"), ("Sofia", "she"), ("Tariq", "he"))
ITEMS = (("apples", "bags"), ("marbles", "jars"), ("stickers", "sheets"), ("cards", "packs"),
         ("cookies", "boxes"), ("pencils", "cases"), ("stamps", "books"), ("shells", "buckets"),
         ("beads", "strings"), ("coins", "purses"), ("eggs", "cartons"), ("books", "crates"))
FRIENDS = ("a friend", "her brother", "his sister", "a neighbour", "the teacher", "a classmate")
GAIN_VERBS = ("finds", "buys", "is given", "wins", "collects")
LOSS_VERBS = ("gives away", "loses", "uses", "sells", "trades away")


@dataclass(frozen=True)
class Event:
    """One change to the total: sign * count * size (count is 1 for a plain gain or loss)."""

    sign: int  # +1 gain, -1 loss
    count: int
    size: int
    sentence: str

    @property
    def value(self) -> int:
        return self.count * self.size

    @property
    def expression(self) -> str:
        return f"{self.count} * {self.size}" if self.count > 1 else str(self.size)


@dataclass(frozen=True)
class Problem:
    name: str
    pronoun: str
    items: str
    start: int
    events: tuple[Event, ...]

    @property
    def answer(self) -> int:
        return self.start + sum(event.sign * event.value for event in self.events)

    @property
    def question(self) -> str:
        story = " ".join(event.sentence for event in self.events)
        return (f"{self.name} has {self.start} {self.items}. {story} "
                f"How many {self.items} does {self.name} have now?")


@dataclass(frozen=True)
class ArithmeticConfig:
    """Knobs of the generator."""

    seed: int = 0
    """Seed of the draw; the same seed gives the same problems and CoTs."""
    min_steps: int = 2
    """Fewest events after the starting amount."""
    max_steps: int = 4
    """Most events after the starting amount."""
    max_number: int = 20
    """Largest amount in a sentence (group counts stay <= 9)."""
    group_probability: float = 0.4
    """Chance that an event comes in groups ("3 bags with 5 apples in each")."""
    sizes: dict[str, int] = field(default_factory=lambda: {"train": 2000, "dev": 1000, "test": 2000})
    """Number of problems per split."""

    def __post_init__(self):
        if not 1 <= self.min_steps <= self.max_steps:
            raise ReftuneError(f"need 1 <= min_steps <= max_steps, got {self.min_steps}, {self.max_steps}")
        if self.max_number < 3:
            raise ReftuneError(f"max_number must be >= 3, got {self.max_number}")
        if not 0 <= self.group_probability <= 1:
            raise ReftuneError(f"group_probability must be in [0, 1], got {self.group_probability}")
        unknown = set(self.sizes) - set(SPLIT_BUCKETS)
        if unknown:
            raise ReftuneError(f"unknown splits {sorted(unknown)} in sizes: use {sorted(SPLIT_BUCKETS)}")


def draw_problem(rng: random.Random, config: ArithmeticConfig) -> Problem:
    name, pronoun = rng.choice(NAMES)
    items, containers = rng.choice(ITEMS)
    start = rng.randint(config.max_number // 2, config.max_number * 2)
    total, events = start, []
    for _ in range(rng.randint(config.min_steps, config.max_steps)):
        grouped = rng.random() < config.group_probability
        count = rng.randint(2, min(9, config.max_number)) if grouped else 1
        # A loss must leave something: the story is told in order, so it must make sense in order.
        sign = -1 if total > 2 * count and rng.random() < 0.45 else +1
        largest = min(config.max_number, (total - 1) // count) if sign < 0 else config.max_number
        size = rng.randint(2, largest)
        events.append(Event(sign, count, size, _sentence(rng, pronoun, items, containers, sign,
                                                        count, size)))
        total += sign * count * size
    return Problem(name, pronoun, items, start, tuple(events))


def _sentence(rng, pronoun, items, containers, sign, count, size) -> str:
    subject = pronoun.capitalize()
    if count > 1 and sign > 0:
        return f"{subject} {rng.choice(('buys', 'gets', 'is given'))} {count} {containers} with {size} {items} in each."
    if count > 1:
        return f"{subject} gives {count} friends {size} {items} each."
    verb = rng.choice(GAIN_VERBS if sign > 0 else LOSS_VERBS)
    if verb == "is given":
        return f"{subject} is given {size} {items} by {rng.choice(FRIENDS)}."
    return f"{subject} {verb} {size} {items}."


def split_of(problem: Problem) -> str:
    bucket = int(hashlib.sha256(problem.question.encode()).hexdigest()[:8], 16) % 100
    return next(split for split, buckets in SPLIT_BUCKETS.items() if bucket in buckets)


def generate_problems(config: ArithmeticConfig, split: str) -> list[tuple[Problem, str]]:
    """`config.sizes[split]` distinct problems of `split`, each with the strategy of its gold CoT."""
    if split not in SPLIT_BUCKETS:
        raise ReftuneError(f"unknown split {split!r} for arithmetic: use one of {sorted(SPLIT_BUCKETS)}")
    size = config.sizes.get(split, 0)
    rng = random.Random(f"{config.seed}-{split}")
    seen, problems, draws_since_new = set(), [], 0
    while len(problems) < size:
        problem = draw_problem(rng, config)
        strategy = rng.choice(STRATEGIES)
        if problem.question not in seen and split_of(problem) == split:
            seen.add(problem.question)
            problems.append((problem, strategy))
            draws_since_new = 0
        elif (draws_since_new := draws_since_new + 1) > 5000:
            raise ReftuneError(f"the arithmetic settings allow fewer than {size} distinct {split} problems: "
                               f"raise max_number or max_steps, or ask for fewer")
    return problems


# ---- reasoning paths ---------------------------------------------------------------------------
def one_expression(problem: Problem) -> str:
    """The whole problem as one sum: "12 + 3 * 5 - 4"."""
    return f"{problem.start}" + "".join(
        f" {'+' if e.sign > 0 else '-'} {e.expression}" for e in problem.events)


def nl_cot(problem: Problem, strategy: str) -> str:
    """The natural-language reasoning along one path (without the answer trigger)."""
    items, start = problem.items, problem.start
    if strategy == "in_order":
        lines, total = [f"{problem.name} starts with {start} {items}."], start
        for event in problem.events:
            if event.count > 1:
                lines.append(f"{event.count} groups of {event.size} is {event.count} * {event.size} = {event.value} {items}.")
            new_total = total + event.sign * event.value
            operator = "+" if event.sign > 0 else "-"
            lines.append(f"Now {problem.pronoun} has {total} {operator} {event.value} = {new_total} {items}.")
            total = new_total
        return "\n".join(lines)
    if strategy == "gains_and_losses":
        lines = []
        for event in problem.events:
            if event.count > 1:
                lines.append(f"{event.count} * {event.size} = {event.value} {items}.")
        gained = _sum_line([e.value for e in problem.events if e.sign > 0], f"{items} gained", lines)
        lost = _sum_line([e.value for e in problem.events if e.sign < 0], f"{items} lost", lines)
        lines.append(f"{problem.name} ends with {start} + {gained} - {lost} = {problem.answer} {items}.")
        return "\n".join(lines)
    if strategy == "one_expression":
        return f"{problem.name} has {one_expression(problem)} = {problem.answer} {items} in the end."
    raise ValueError(f"unknown strategy {strategy!r}: use one of {STRATEGIES}")


def _sum_line(values: list[int], what: str, lines: list[str]) -> int:
    total = sum(values)
    if len(values) > 1:
        lines.append(f"In all, {' + '.join(map(str, values))} = {total} {what}.")
    else:
        lines.append(f"{total} {what}.")
    return total


def program_cot(problem: Problem, strategy: str) -> str:
    """The P-CoT program along one path: def solution(): ... return result."""
    body = []
    if strategy == "in_order":
        body.append(f"{problem.items} = {problem.start}")
        for event in problem.events:
            body.append(f"{problem.items} = {problem.items} {'+' if event.sign > 0 else '-'} {event.expression}")
        body.append(f"result = {problem.items}")
    elif strategy == "gains_and_losses":
        gains = [e.expression for e in problem.events if e.sign > 0] or ["0"]
        losses = [e.expression for e in problem.events if e.sign < 0] or ["0"]
        body += [f"start = {problem.start}", f"gained = {' + '.join(gains)}",
                 f"lost = {' + '.join(losses)}", "result = start + gained - lost"]
    elif strategy == "one_expression":
        body.append(f"result = {one_expression(problem)}")
    else:
        raise ValueError(f"unknown strategy {strategy!r}: use one of {STRATEGIES}")
    lines = "\n".join(f"    {line}" for line in body)
    return f'def solution():\n    """{problem.question}"""\n{lines}\n    return result'


def cot(problem: Problem, style: str, strategy: str) -> str:
    return program_cot(problem, strategy) if style == "python" else nl_cot(problem, strategy)


@register_task
class Arithmetic(Task):
    name = "arithmetic"

    def __init__(self, style: str = "nl", **knobs):
        super().__init__(style)
        try:
            self.config = ArithmeticConfig(**knobs)
        except TypeError as exc:
            raise ReftuneError(f"arithmetic: {exc}; the knobs are {list(ArithmeticConfig.__dataclass_fields__)}") from None

    def load(self, split: str = "train", path=None) -> list[Example]:
        """Generated problems of `split` (train / dev / test); a `path` loads a file instead."""
        if path is not None:
            return super().load(split, path)
        return [
            Example(f"arithmetic_{split}_{index}", problem.question, float(problem.answer),
                    cot(problem, self.style, strategy))
            for index, (problem, strategy) in enumerate(generate_problems(self.config, split))
        ]

