"""How far reviewers agree: Cohen's kappa for two reviewers, Fleiss' kappa for more, over the
samples of the records they share. Pure functions over labels.

Cohen's kappa, Wikipedia's worked example (50 proposals; both say yes on 20, both no on 15):

>>> first = ["yes"] * 20 + ["yes"] * 5 + ["no"] * 10 + ["no"] * 15
>>> second = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
>>> round(cohen_kappa(first, second), 4)   # p_o = 0.7, p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5
0.4

Fleiss' kappa: two items, three raters each; p_accept = 4/6, P_1 = 1, P_2 = 1/3, P_bar = 2/3,
P_e = (4/6)^2 + (2/6)^2 = 5/9, kappa = (2/3 - 5/9) / (1 - 5/9) = 1/4:

>>> round(fleiss_kappa([("accept", "accept", "accept"), ("accept", "reject", "reject")]), 4)
0.25
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from reftune.review.journal import SampleReview
from reftune.review.team import decision_of

DECISION_LABELS = ("accept", "reject", "flag")
RIGHT_LABELS = ("right", "wrong")


def cohen_kappa(first: list[str], second: list[str]) -> float | None:
    """Cohen's kappa of two raters' labels of the same items: (p_o - p_e) / (1 - p_e), p_e from each
    rater's own label shares. None when it is undefined (no items, or both gave one label to all)."""
    if len(first) != len(second):
        raise ValueError(f"{len(first)} labels against {len(second)}: the raters must label the same items")
    if not first:
        return None
    n = len(first)
    observed = sum(a == b for a, b in zip(first, second)) / n
    shares_first, shares_second = Counter(first), Counter(second)
    expected = sum(shares_first[label] * shares_second[label] for label in shares_first) / (n * n)
    if expected == 1:
        return None
    return (observed - expected) / (1 - expected)


def fleiss_kappa(ratings: list[tuple[str, ...]]) -> float | None:
    """Fleiss' kappa: each item is the labels its n raters gave (the same n for every item; the
    raters themselves may differ from item to item). None when undefined (no items, fewer than two
    raters, or one label everywhere)."""
    if not ratings or len(ratings[0]) < 2:
        return None
    raters = len(ratings[0])
    if any(len(item) != raters for item in ratings):
        raise ValueError("Fleiss' kappa needs the same number of raters for every item")
    items = len(ratings)
    totals = Counter(label for item in ratings for label in item)
    expected = sum((count / (items * raters)) ** 2 for count in totals.values())
    agreement = [(sum(c * c for c in Counter(item).values()) - raters) / (raters * (raters - 1)) for item in ratings]
    observed = sum(agreement) / items
    if expected == 1:
        return None
    return (observed - expected) / (1 - expected)


def observed_agreement(ratings: list[tuple[str, ...]]) -> float | None:
    """The share of pairs of ratings of the same item that agree (the raw agreement kappa corrects).

    >>> observed_agreement([("a", "a"), ("a", "b")])
    0.5
    """
    pairs = agreeing = 0
    for item in ratings:
        counts = Counter(item)
        pairs += len(item) * (len(item) - 1) // 2
        agreeing += sum(c * (c - 1) // 2 for c in counts.values())
    return agreeing / pairs if pairs else None


def decision_label(review: SampleReview) -> str | None:
    """A reviewer's decision on a sample: accept (accepted, or edited and kept), reject, or flag
    (flagged without a decision); None when they did none of these."""
    decision = decision_of(review)
    if decision:
        return decision[:-2]  # "accepted" -> "accept", "rejected" -> "reject"
    return "flag" if review.flagged else None


def right_label(review: SampleReview) -> str | None:
    """Is the CoT as the model wrote it right? Accepted as it stands: right; rejected, or corrected
    by an edit: wrong; None when the reviewer judged neither way."""
    if review.decision == "rejected" or review.edited:
        return "wrong"
    return "right" if review.decision == "accepted" else None


@dataclass(frozen=True)
class Agreement:
    """One line of the agreement table."""

    question: str            # "decision", "accept", "reject", "flag", "is this CoT right"
    statistic: str           # "Cohen's kappa" or "Fleiss' kappa"
    kappa: float | None      # None: undefined (no shared sample, or one label everywhere)
    items: int               # samples every reviewer sharing them labelled
    observed: float | None   # raw agreement


def kappa_of(ratings: list[tuple[str, ...]], cohen: bool) -> float | None:
    """Cohen's kappa (the same two raters, in the same order, on every item), else Fleiss'."""
    if cohen:
        return cohen_kappa([item[0] for item in ratings], [item[1] for item in ratings])
    return fleiss_kappa(ratings)


def agreement_table(shared: list[tuple[SampleReview, ...]], cohen: bool) -> list[Agreement]:
    """shared: for each sample of a record several reviewers share, their reviews (for Cohen's
    kappa, a team of two, always in the same order). The decision overall, each decision against
    the others, and "is this CoT right"; each over the samples every one of them labelled."""
    statistic = "Cohen's kappa" if cohen else "Fleiss' kappa"
    decisions = [labels for labels in (tuple(map(decision_label, item)) for item in shared) if None not in labels]
    rights = [labels for labels in (tuple(map(right_label, item)) for item in shared) if None not in labels]
    table = [Agreement("decision", statistic, kappa_of(decisions, cohen), len(decisions),
                       observed_agreement(decisions))]
    for label in DECISION_LABELS:
        binary = [tuple(label if x == label else "other" for x in item) for item in decisions]
        table.append(Agreement(label, statistic, kappa_of(binary, cohen), len(binary), observed_agreement(binary)))
    table.append(Agreement("is this CoT right", statistic, kappa_of(rights, cohen), len(rights),
                           observed_agreement(rights)))
    return table
