import itertools

import pytest

from reftune.selection import accuracy, majority_vote, pass_at_k
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
