"""Choosing and scoring answers from samples: accuracy, majority vote, verifier reranking, pass@k,
and the AUC a verifier is judged by. Pure functions."""
from __future__ import annotations

from math import comb
from typing import Callable, Sequence


def accuracy(correct: Sequence[bool]) -> float:
    """Fraction of True; 0.0 for no questions.

    >>> accuracy([True, False, True, True])
    0.75
    """
    return sum(bool(c) for c in correct) / len(correct) if correct else 0.0


def majority_vote(answers: Sequence, equal: Callable[[object, object], bool] = lambda a, b: a == b):
    """The most common answer; None answers (nothing extracted) do not vote. Answers that `equal`
    joins count together (the first of them stands for the group). A tie goes to the group whose
    first member came first, so the result depends only on the order of the samples.

    >>> majority_vote([None, 3.0, 5.0, 5.0, None, None])
    5.0
    >>> majority_vote([2.0, 7.0, 7.0, 2.0])  # tie: 2.0 was seen first
    2.0
    >>> majority_vote([None, None]) is None
    True
    """
    groups: list[list] = []  # [representative, count]
    for answer in answers:
        if answer is None:
            continue
        for group in groups:
            if equal(group[0], answer):
                group[1] += 1
                break
        else:
            groups.append([answer, 1])
    if not groups:
        return None
    best = max(groups, key=lambda group: group[1])  # max keeps the first of equal counts
    return best[0]


def pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): the chance that at least one of k samples drawn without
    replacement from the n samples is correct, = 1 - C(n - c, k) / C(n, k).

    >>> pass_at_k(10, 0, 1), pass_at_k(10, 10, 5), pass_at_k(4, 1, 2)
    (0.0, 1.0, 0.5)
    """
    if not 0 <= num_correct <= num_samples or not 1 <= k <= num_samples:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={num_samples} c={num_correct} k={k}")
    if num_samples - num_correct < k:
        return 1.0
    return 1.0 - comb(num_samples - num_correct, k) / comb(num_samples, k)


def pass_at_k_levels(num_samples: int) -> list[int]:
    """The k reported for n samples: 1, 2, 4, ... up to n, and n itself.

    >>> pass_at_k_levels(10)
    [1, 2, 4, 8, 10]
    """
    levels, k = [], 1
    while k < num_samples:
        levels.append(k)
        k *= 2
    return levels + [num_samples]


def rerank(answers: Sequence, scores: Sequence[float]):
    """The answer of the sample a verifier scores highest, among samples with an answer (the
    paper's reward-model reranking); None when no sample has one. A tie goes to the earlier sample.

    >>> rerank([None, 3.0, 5.0, 5.0], [0.99, 0.2, 0.7, 0.4])
    5.0
    >>> rerank([None, None], [0.5, 0.9]) is None
    True
    """
    if len(answers) != len(scores):
        raise ValueError(f"{len(answers)} answers but {len(scores)} scores")
    best = None
    for answer, score in zip(answers, scores):
        if answer is not None and (best is None or score > best[1]):
            best = (answer, score)
    return None if best is None else best[0]


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve: the chance that a random positive scores above a random negative
    (ties count half). 0.5 is chance; nan when one class is missing.

    >>> roc_auc([0.9, 0.8, 0.3, 0.1], [True, False, True, False])
    0.75
    >>> roc_auc([0.5, 0.5], [True, False])
    0.5
    """
    positives = [s for s, label in zip(scores, labels) if label]
    negatives = [s for s, label in zip(scores, labels) if not label]
    if not positives or not negatives:
        return float("nan")
    # Rank-sum form (Mann-Whitney U), O(n log n): average ranks over ties.
    ordered = sorted((s, bool(label)) for s, label in zip(scores, labels))
    rank_sum, start = 0.0, 0
    while start < len(ordered):
        end = start
        while end < len(ordered) and ordered[end][0] == ordered[start][0]:
            end += 1
        average_rank = (start + 1 + end) / 2
        rank_sum += average_rank * sum(label for _, label in ordered[start:end])
        start = end
    n_pos, n_neg = len(positives), len(negatives)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def paired_difference(first: Sequence[bool], second: Sequence[bool], z: float = 1.96) -> tuple[float, float, float]:
    """accuracy(first) - accuracy(second) over the same questions, with its 95% interval (z = 1.96)
    from the spread of the per-question differences: only the questions the two disagree on move it,
    as in McNemar's test, so it is much narrower than two separate intervals would be.

    >>> paired_difference([True] * 60 + [False] * 40, [True] * 50 + [False] * 50)  # 10 wins, no losses
    (0.1, 0.040904, 0.159096)
    """
    if len(first) != len(second) or not first:
        raise ValueError(f"need the same questions on both sides, got {len(first)} and {len(second)}")
    differences = [int(bool(a)) - int(bool(b)) for a, b in zip(first, second)]
    n = len(differences)
    mean = sum(differences) / n
    variance = sum((d - mean) ** 2 for d in differences) / max(n - 1, 1)
    half_width = z * (variance / n) ** 0.5
    return round(mean, 6), round(mean - half_width, 6), round(mean + half_width, 6)


def certainty(low: float, high: float) -> str:
    """One plain sentence for an interval of a difference: a clear gain, a clear loss, or within noise.

    >>> certainty(0.02, 0.09), certainty(-0.03, 0.05)
    ('a clear gain: the whole interval is above 0', 'within noise: the interval holds 0')
    """
    if low > 0:
        return "a clear gain: the whole interval is above 0"
    if high < 0:
        return "a clear loss: the whole interval is below 0"
    return "within noise: the interval holds 0"
