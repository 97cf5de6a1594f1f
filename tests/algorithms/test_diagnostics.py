"""The learning diagnostics and DAPO's dynamic-sampling filter on hand-made groups."""
import pytest
import torch

from reftune.algorithms.diagnostics import (NO_SIGNAL_STEPS, SignalCounts, informative_groups, informative_rows,
                                            no_signal_streak, no_signal_warning, signal_counts)

# Four questions, three samples each: all right, mixed, all wrong, all "parsed but wrong".
SCORES = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.1, 0.0, 0.0, 0.0, 0.1, 0.1, 0.1])


def plain_informative(scores, group_size):
    values = scores.tolist()
    return [len(set(values[i:i + group_size])) > 1 for i in range(0, len(values), group_size)]


def test_informative_groups_are_those_whose_rewards_differ():
    assert informative_groups(SCORES, 3).tolist() == plain_informative(SCORES, 3) == [False, True, False, False]
    assert informative_rows(SCORES, 3).tolist() == [False] * 3 + [True] * 3 + [False] * 6
    assert not informative_groups(SCORES, 1).any()  # one sample per question has nothing to compare


def test_informative_rows_select_a_rollouts_rows_and_none_equal_keeps_them_all():
    scores = torch.tensor([1.0, 0.0, 0.1, 0.0])
    assert informative_rows(scores, 2).all()
    rows = torch.arange(12)
    assert rows[informative_rows(SCORES, 3)].tolist() == [3, 4, 5]


def test_informative_rows_keep_at_most_the_groups_still_needed():
    scores = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.1, 0.0, 0.0, 1.0])  # groups of 2: 0, 2, 3 informative
    assert informative_rows(scores, 2, max_groups=2).tolist() == [True, True, False, False,
                                                                  True, True, False, False]
    assert informative_rows(scores, 2, max_groups=0).sum() == 0
    assert torch.equal(informative_rows(scores, 2, max_groups=5), informative_rows(scores, 2))


def test_groups_must_be_whole():
    with pytest.raises(ValueError, match="do not split into groups of 5"):
        informative_groups(SCORES, 5)


def test_signal_counts_give_the_shares_and_add_over_processes():
    finished = torch.tensor([True] * 10 + [False] * 2)
    parsed = SCORES > 0
    counts = signal_counts(SCORES, 3, finished, parsed)
    assert counts.shares() == pytest.approx({"no_signal_group_share": 3 / 4, "truncated_share": 2 / 12,
                                             "no_answer_share": 4 / 12})
    # two processes holding the two halves: summing the tensors gives the whole step's counts
    halves = [signal_counts(SCORES[rows], 3, finished[rows], parsed[rows]) for rows in (slice(0, 6), slice(6, 12))]
    summed = SignalCounts.from_tensor(halves[0].as_tensor() + halves[1].as_tensor())
    assert summed == counts


def test_one_sample_per_question_counts_no_groups():
    """The paper's PPO samples once per question: its value head is the baseline, so no warning."""
    counts = signal_counts(SCORES, 1, torch.ones(12, dtype=torch.bool), torch.ones(12, dtype=torch.bool))
    assert counts.groups == 0 and counts.shares()["no_signal_group_share"] == 0


def test_no_signal_warning_comes_once_after_the_streak():
    streak, warnings = 0, []
    for share in [0.95] * 9 + [0.5] + [0.95] * 15:
        streak = no_signal_streak(streak, share)
        warnings.append(no_signal_warning(streak))
    said = [step for step, line in enumerate(warnings) if line]
    assert said == [9 + 1 + NO_SIGNAL_STEPS - 1]  # the streak restarted after the 0.5 step
    assert "num_samples_per_question" in warnings[said[0]] and "dynamic_sampling" in warnings[said[0]]
