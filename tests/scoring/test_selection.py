import itertools

import pytest

from reftune.scoring.selection import accuracy, majority_vote, pass_at_k, rerank, roc_auc
from reftune.tasks.answers import numbers_equal


def test_vote_ignores_missing_answers_and_joins_equal_numbers():
    answers = [None, 4.0, 4.001, None, None, 7.0]
    assert majority_vote(answers, numbers_equal) == 4.0
    assert majority_vote(answers) == 4.0  # plain equality: 4.0, 4.001 and 7.0 tie; 4.0 came first


def test_vote_ties_break_by_first_appearance_whatever_the_values():
    assert majority_vote(["c", "a", "a", "c"]) == "c"
    assert majority_vote(["a", "c", "c", "a"]) == "a"


def test_pass_at_k_matches_enumeration_of_all_subsets():
    correct = [True, False, False, True, False, False]
    for k in range(1, len(correct) + 1):
        subsets = list(itertools.combinations(correct, k))
        expected = sum(any(s) for s in subsets) / len(subsets)
        assert pass_at_k(len(correct), sum(correct), k) == pytest.approx(expected)


def test_pass_at_k_refuses_impossible_counts():
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_accuracy_of_hand_made_results():
    assert accuracy([True, True, False, False, False]) == 0.4
    assert accuracy([]) == 0.0


def test_rerank_and_vote_on_hand_made_samples_match_hand_computed_answers():
    # Question 1: the vote picks the common wrong answer, the verifier the rare right one.
    answers = [12.0, 12.0, None, 15.0, 12.0]
    scores = [0.30, 0.20, 0.95, 0.80, 0.10]  # the top score has no answer: it cannot be picked
    assert majority_vote(answers, numbers_equal) == 12.0
    assert rerank(answers, scores) == 15.0
    # Question 2: equal top scores go to the earlier sample; no sample with an answer gives None.
    assert rerank([4.0, 9.0], [0.5, 0.5]) == 4.0
    assert rerank([None, None, None], [0.1, 0.2, 0.3]) is None
    with pytest.raises(ValueError):
        rerank([1.0], [0.1, 0.2])


def test_roc_auc_matches_counting_every_positive_negative_pair():
    scores = [0.1, 0.4, 0.4, 0.35, 0.8, 0.9, 0.4, 0.05]
    labels = [False, True, False, True, True, False, True, False]
    pairs = [(p, n) for p, lp in zip(scores, labels) if lp for n, ln in zip(scores, labels) if not ln]
    expected = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert roc_auc(scores, labels) == pytest.approx(expected)
    assert roc_auc([1, 2, 3], [False, True, True]) == 1.0
    assert roc_auc([3, 2, 1], [False, True, True]) == 0.0
    assert roc_auc([1, 2], [True, True]) != roc_auc([1, 2], [True, True])  # nan: one class only
