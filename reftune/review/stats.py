"""The figures the app draws, as plain numbers: accuracy by difficulty, answer distributions, CoT
lengths, RL rollouts by step, and two runs compared on the same questions.

>>> [(bar.label, bar.count) for bar in histogram([1, 2, 2, 9], bins=2)]
[('1-5', 3), ('5-9', 1)]
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from reftune.review.records import OUTCOMES, Record


@dataclass(frozen=True)
class Bar:
    """One bar of a chart: `value` sets its height, `count` is how many items it stands for."""

    label: str
    value: float
    count: int


@dataclass(frozen=True)
class AnswerCount:
    """One distinct answer of a question's samples."""

    answer: object
    count: int
    correct: bool   # equals the gold
    won: bool       # the majority vote picked it


@dataclass(frozen=True)
class StepStats:
    """The rollouts logged at one RL step."""

    step: int
    samples: int
    mean_reward: float
    accuracy: float
    mean_length: float   # characters


@dataclass(frozen=True)
class Comparison:
    """Two inputs over the questions both hold (matched by id)."""

    common: int
    both_right: int
    both_wrong: int
    right_to_wrong: list[tuple[Record, Record]]   # (in A, in B): A right, B not
    wrong_to_right: list[tuple[Record, Record]]
    only_a: int
    only_b: int


def outcome_counts(records: list[Record]) -> list[Bar]:
    counts = Counter(record.outcome for record in records)
    total = max(len(records), 1)
    return [Bar(outcome, counts[outcome] / total, counts[outcome]) for outcome in OUTCOMES if counts[outcome]]


def status_counts(records: list[Record]) -> list[Bar]:
    """Samples by status (correct, wrong answer, no answer, program error, ...), most common first."""
    counts = Counter(sample.status or "unchecked" for record in records for sample in record.samples)
    total = max(sum(counts.values()), 1)
    return [Bar(status.replace("_", " "), count / total, count) for status, count in counts.most_common()]


def accuracy_by_difficulty(records: list[Record], bins: int = 5) -> list[Bar]:
    """Share of questions answered right in each fifth of the questions by length in words, the
    difficulty measure every input has (longer word problems tend to need more steps)."""
    good = sorted((len(r.question.split()), r.outcome == "correct") for r in records if not r.error)
    if not good:
        return []
    size = -(-len(good) // bins)
    bars = []
    for start in range(0, len(good), size):
        chunk = good[start:start + size]
        label = f"{chunk[0][0]}-{chunk[-1][0]} words"
        bars.append(Bar(label, sum(right for _, right in chunk) / len(chunk), len(chunk)))
    return bars


def solve_rate_histogram(records: list[Record]) -> list[Bar]:
    """Questions by the share of their samples that are right (none, 1-25%, ..., all)."""
    edges = [("none", 0.0, 0.0), ("1-25%", 0.0, 0.25), ("26-50%", 0.25, 0.5),
             ("51-75%", 0.5, 0.75), ("76-99%", 0.75, 0.999999), ("all", 0.999999, 1.0)]
    rates = [sum(s.status == "correct" for s in r.samples) / len(r.samples) for r in records if r.samples]
    counts = [sum(1 for rate in rates if (low < rate <= high) or (high == 0.0 and rate == 0.0))
              for _, low, high in edges]
    total = max(len(rates), 1)
    return [Bar(label, count / total, count) for (label, _, _), count in zip(edges, counts)]


def histogram(values: list[float], bins: int = 10, span: tuple[float, float] | None = None) -> list[Bar]:
    """Equal-width bins over `span` (default: the smallest value to the largest); value = count."""
    if span is None:
        if not values:
            return []
        span = (min(values), max(values))
    low, high = span
    bins = bins if high > low else 1
    width = (high - low) / bins or 1.0
    counts = [0] * bins
    for value in values:
        counts[min(max(int((value - low) / width), 0), bins - 1)] += 1
    return [Bar(f"{low + n * width:.0f}-{low + (n + 1) * width:.0f}", count, count) for n, count in enumerate(counts)]


def cot_lengths(records: list[Record]) -> tuple[list[float], list[float]]:
    """Characters per sample: (right samples, the others)."""
    right, other = [], []
    for record in records:
        for sample in record.samples:
            (right if sample.status == "correct" else other).append(float(len(sample.text)))
    return right, other


def answer_distribution(record: Record, is_correct) -> list[AnswerCount]:
    """Distinct answers of the record's samples (the last RL step's, for rollouts), most common first.
    is_correct(pred, gold) is the task's."""
    last_step = record.samples[-1].step if record.samples else None
    answers = [s.answer for s in record.samples if s.step == last_step]
    counts = Counter(repr(answer) for answer in answers)
    first = {repr(answer): answer for answer in reversed(answers)}
    return [AnswerCount(first[key], count, first[key] is not None and is_correct(first[key], record.gold),
                        first[key] is not None and first[key] == record.vote)
            for key, count in counts.most_common()]


def by_step(records: list[Record]) -> list[StepStats]:
    """Mean reward, accuracy and CoT length of the rollouts of each logged RL step."""
    steps = defaultdict(list)
    for record in records:
        for sample in record.samples:
            if sample.step is not None:
                steps[sample.step].append(sample)
    return [StepStats(step, len(samples), sum(s.reward or 0.0 for s in samples) / len(samples),
                      sum(s.status == "correct" for s in samples) / len(samples),
                      sum(len(s.text) for s in samples) / len(samples))
            for step, samples in sorted(steps.items())]


def compare(records_a: list[Record], records_b: list[Record]) -> Comparison:
    """Which questions flipped between two inputs: right means the record's outcome is correct."""
    in_b = {record.id: record for record in records_b if not record.error}
    in_a = {record.id: record for record in records_a if not record.error}
    pairs = [(a, in_b[record_id]) for record_id, a in in_a.items() if record_id in in_b]
    right = [(a.outcome == "correct", b.outcome == "correct") for a, b in pairs]
    return Comparison(
        common=len(pairs), both_right=right.count((True, True)), both_wrong=right.count((False, False)),
        right_to_wrong=[pair for pair, flags in zip(pairs, right) if flags == (True, False)],
        wrong_to_right=[pair for pair, flags in zip(pairs, right) if flags == (False, True)],
        only_a=len(in_a) - len(pairs), only_b=len(in_b) - len(pairs))
