"""Agreement between reviewers: Cohen's and Fleiss' kappa against values computed by hand."""
import pytest

from reftune.review.agreement import (agreement_table, cohen_kappa, decision_label, fleiss_kappa,
                                      observed_agreement, right_label)
from reftune.review.journal import SampleReview

ACCEPTED, REJECTED = SampleReview("accepted"), SampleReview("rejected")
FLAGGED, EDITED = SampleReview(flagged=True), SampleReview(text="fixed", version=1)


def test_cohen_kappa_matches_a_table_computed_by_hand():
    # 10 items; agree on 4 accepts and 3 rejects: p_o = 0.7; first rater 6 accepts of 10, second 5:
    # p_e = 0.6 * 0.5 + 0.4 * 0.5 = 0.5; kappa = (0.7 - 0.5) / 0.5 = 0.4
    first = ["a"] * 4 + ["r"] * 3 + ["a", "a", "r"]
    second = ["a"] * 4 + ["r"] * 3 + ["r", "r", "a"]
    assert cohen_kappa(first, second) == pytest.approx(0.4)


def test_cohen_kappa_is_one_for_perfect_agreement_and_negative_below_chance():
    assert cohen_kappa(["a", "r", "a"], ["a", "r", "a"]) == pytest.approx(1.0)
    # always opposite on a balanced set: p_o = 0, p_e = 0.5 -> -1
    assert cohen_kappa(["a", "r", "a", "r"], ["r", "a", "r", "a"]) == pytest.approx(-1.0)


def test_cohen_kappa_is_undefined_without_items_or_with_one_label_everywhere():
    assert cohen_kappa([], []) is None
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None
    with pytest.raises(ValueError, match="same items"):
        cohen_kappa(["a"], ["a", "r"])


def test_fleiss_kappa_matches_the_worked_example_of_fleiss_1971_on_wikipedia():
    """10 subjects, 14 raters, 5 categories: P_bar = 0.378, P_e = 0.213, kappa = 0.210."""
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    ratings = [tuple(str(category) for category, count in enumerate(row) for _ in range(count)) for row in table]
    assert fleiss_kappa(ratings) == pytest.approx(0.20993, abs=1e-5)


def test_fleiss_kappa_by_hand_with_three_raters():
    # items: (a,a,a) P=1; (a,a,r) P=1/3; (r,r,r) P=1; (a,r,f) P=0 -> P_bar = 7/12
    # shares: a 6/12, r 5/12, f 1/12 -> P_e = (36 + 25 + 1) / 144 = 62/144
    # kappa = (7/12 - 62/144) / (1 - 62/144) = (84 - 62) / (144 - 62) = 22/82
    ratings = [("a", "a", "a"), ("a", "a", "r"), ("r", "r", "r"), ("a", "r", "f")]
    assert fleiss_kappa(ratings) == pytest.approx(22 / 82)
    assert observed_agreement(ratings) == pytest.approx(7 / 12)


def test_fleiss_kappa_needs_the_same_number_of_raters_per_item():
    assert fleiss_kappa([]) is None and fleiss_kappa([("a",), ("r",)]) is None
    assert fleiss_kappa([("a", "a"), ("a", "a")]) is None  # one label everywhere: undefined
    with pytest.raises(ValueError, match="same number of raters"):
        fleiss_kappa([("a", "a"), ("a", "a", "r")])


def test_labels_read_decisions_flags_and_corrections():
    assert [decision_label(r) for r in (ACCEPTED, REJECTED, FLAGGED, EDITED, SampleReview())] == [
        "accept", "reject", "flag", "accept", None]
    assert decision_label(SampleReview("rejected", flagged=True)) == "reject"  # a decision wins over a flag
    # is the CoT right as the model wrote it: an edit says it was not
    assert [right_label(r) for r in (ACCEPTED, REJECTED, FLAGGED, EDITED, SampleReview())] == [
        "right", "wrong", None, "wrong", None]


def test_agreement_table_for_two_reviewers_uses_cohen_over_the_samples_both_labelled():
    shared = [(ACCEPTED, ACCEPTED), (REJECTED, REJECTED), (ACCEPTED, REJECTED), (FLAGGED, FLAGGED),
              (ACCEPTED, SampleReview())]  # the last: only one of them labelled it
    table = {row.question: row for row in agreement_table(shared, cohen=True)}
    decision = table["decision"]
    assert decision.statistic == "Cohen's kappa" and decision.items == 4
    # first a, r, a, f; second a, r, r, f: p_o = 3/4; p_e = (2*1 + 1*2 + 1*1) / 16 = 5/16
    assert decision.kappa == pytest.approx((3 / 4 - 5 / 16) / (1 - 5 / 16))
    # accept against the rest: (y,y), (n,n), (y,n), (n,n): p_o = 3/4, p_e = (2*1 + 2*3) / 16 = 1/2
    assert table["accept"].kappa == pytest.approx(0.5)
    assert table["is this CoT right"].items == 3  # the flagged pair judged neither way
    assert table["flag"].kappa == pytest.approx(1.0)


def test_agreement_table_for_a_bigger_team_uses_fleiss():
    shared = [(ACCEPTED, ACCEPTED, ACCEPTED), (ACCEPTED, ACCEPTED, REJECTED), (REJECTED, REJECTED, REJECTED)]
    table = agreement_table(shared, cohen=False)
    assert table[0].statistic == "Fleiss' kappa" and table[0].items == 3
    # P = 1, 1/3, 1 -> 7/9; shares a 5/9, r 4/9 -> P_e = 41/81; kappa = (63/81 - 41/81) / (40/81) = 22/40
    assert table[0].kappa == pytest.approx(22 / 40)
    assert agreement_table([], cohen=False)[0].kappa is None
