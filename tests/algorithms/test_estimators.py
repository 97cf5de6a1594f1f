"""The group family of advantage estimators against plain loops on hand-made cases."""
import statistics

import pytest
import torch

from reftune.algorithms.advantages import (ADVANTAGE_ESTIMATORS, VALUE_HEAD_ESTIMATORS,
                                           batch_normalised_group_advantages, leave_one_out_advantages,
                                           token_rewards, whiten)

# Two questions, three samples each; rows are right-padded responses of different lengths.
SCORES = torch.tensor([1.0, 0.1, 0.0, 1.0, 1.0, 0.1])
MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0],
                     [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.float32)
K = 3


def per_row(values: list[float]) -> torch.Tensor:
    """Each row's value on its response tokens, 0 on padding."""
    return torch.tensor(values)[:, None] * MASK


def plain_groups(scores: list[float]) -> list[list[float]]:
    return [scores[start:start + K] for start in range(0, len(scores), K)]


def plain_rloo(scores):
    return [s - (sum(group) - s) / (K - 1) for group in plain_groups(scores) for s in group]


def plain_dr_grpo(scores):
    return [s - statistics.fmean(group) for group in plain_groups(scores) for s in group]


def plain_reinforce_baseline(scores, mask):
    """Group-centred score on every response token, then (x - mean) / std over all those tokens."""
    centred = plain_dr_grpo(scores)
    tokens = [c for c, row in zip(centred, mask.tolist()) for m in row if m]
    mean, std = statistics.fmean(tokens), statistics.pstdev(tokens)
    return [(c - mean) / std for c in centred]


def run_estimator(name, scores=SCORES, mask=MASK, **extra):
    rewards = token_rewards(scores, torch.zeros_like(mask), mask, kl_coef=0.0)
    return ADVANTAGE_ESTIMATORS[name](rewards, torch.zeros_like(mask), mask, gamma=1.0, lam=0.95,
                                      num_samples_per_question=K, **extra)


@pytest.mark.parametrize("name,plain", [("rloo", plain_rloo), ("dr_grpo", plain_dr_grpo),
                                        ("reinforce_baseline", lambda s: plain_reinforce_baseline(s, MASK))])
def test_group_estimators_match_plain_loops(name, plain):
    advantages, returns = run_estimator(name)
    assert torch.allclose(advantages, per_row(plain(SCORES.tolist())), atol=1e-5)
    assert (advantages[MASK == 0] == 0).all() and (returns == 0).all()


def test_every_estimator_takes_the_same_keywords():
    for name in ADVANTAGE_ESTIMATORS:
        advantages, returns = run_estimator(name, sum_across_processes=None)
        assert advantages.shape == returns.shape == MASK.shape
    assert VALUE_HEAD_ESTIMATORS <= set(ADVANTAGE_ESTIMATORS)


def test_rloo_baseline_excludes_the_sample_itself():
    scores = torch.tensor([1.0, 0.0, 0.0, 0.0])
    advantages = leave_one_out_advantages(scores, torch.ones(4, 1), num_samples_per_question=4)
    # the right sample is compared with three wrong ones (baseline 0), each wrong one with 1/3
    assert advantages[:, 0].tolist() == pytest.approx([1.0, -1 / 3, -1 / 3, -1 / 3])
    # leave-one-out is the group-centred score scaled by K / (K - 1)
    assert torch.allclose(advantages[:, 0], (scores - scores.mean()) * 4 / 3)


def test_dr_grpo_divides_by_no_std():
    scores = torch.tensor([10.0, 0.0, 0.3, 0.1])  # group std 5 and 0.1: GRPO would rescale each
    advantages, _ = ADVANTAGE_ESTIMATORS["dr_grpo"](scores[:, None], torch.zeros(4, 1), torch.ones(4, 1),
                                                     gamma=1.0, lam=1.0, num_samples_per_question=2)
    assert advantages[:, 0].tolist() == pytest.approx([5.0, -5.0, 0.1, -0.1])
    grpo, _ = ADVANTAGE_ESTIMATORS["group"](scores[:, None], torch.zeros(4, 1), torch.ones(4, 1),
                                            gamma=1.0, lam=1.0, num_samples_per_question=2)
    assert grpo[:, 0].tolist() == pytest.approx([2 ** -0.5, -2 ** -0.5] * 2, abs=1e-4)  # unbiased std


def test_reinforce_baseline_scales_by_the_batch_not_the_group():
    scores = torch.tensor([10.0, 0.0, 0.3, 0.1])
    advantages = batch_normalised_group_advantages(scores, torch.ones(4, 1), num_samples_per_question=2)
    # one std for the whole batch: the groups keep their relative scale (5 : 0.1)
    assert advantages[0, 0] / advantages[2, 0] == pytest.approx(50.0, rel=1e-4)
    assert advantages.pow(2).mean() == pytest.approx(1.0, abs=1e-4)


def test_reinforce_baseline_statistics_span_all_processes():
    """With the all-reduce, each process's part equals the whole batch's estimate of its rows."""
    whole, _ = run_estimator("reinforce_baseline")
    first_rows, second_rows = slice(0, 3), slice(3, 6)
    rewards = token_rewards(SCORES, torch.zeros_like(MASK), MASK, kl_coef=0.0)

    def part(rows, other_rows):
        # the other process's (count, sum, sum of squares), as whiten's all-reduce would add them
        other_centred = (SCORES[other_rows] - SCORES[other_rows].mean())[:, None] * MASK[other_rows]
        other = whiten_stats(other_centred, MASK[other_rows])
        return ADVANTAGE_ESTIMATORS["reinforce_baseline"](
            rewards[rows], torch.zeros_like(MASK[rows]), MASK[rows], gamma=1.0, lam=1.0,
            num_samples_per_question=K, sum_across_processes=lambda stats: stats + other)[0]

    assert torch.allclose(part(first_rows, second_rows), whole[first_rows], atol=1e-5)
    assert torch.allclose(part(second_rows, first_rows), whole[second_rows], atol=1e-5)


def whiten_stats(values, mask):
    """The (count, sum, sum of squares) whiten reduces, captured through its hook."""
    seen = []
    whiten(values, mask, lambda stats: seen.append(stats) or stats)
    return seen[0]


@pytest.mark.parametrize("name", ["rloo", "dr_grpo", "reinforce_baseline"])
def test_group_estimators_refuse_one_sample_per_question(name):
    with pytest.raises(ValueError, match="num_samples_per_question >= 2"):
        ADVANTAGE_ESTIMATORS[name](torch.ones(2, 3), torch.zeros(2, 3), torch.ones(2, 3), gamma=1.0, lam=1.0,
                                   num_samples_per_question=1)


def test_group_estimators_include_the_kl_penalty_in_the_score():
    """With kl in the reward, a sample's score is its answer's score minus its summed penalty."""
    kl = torch.full_like(MASK, 0.5)
    rewards = token_rewards(SCORES, kl, MASK, kl_coef=0.1)
    advantages, _ = ADVANTAGE_ESTIMATORS["dr_grpo"](rewards, torch.zeros_like(MASK), MASK, gamma=1.0, lam=1.0,
                                                     num_samples_per_question=K)
    penalised = SCORES - 0.05 * MASK.sum(dim=1)
    assert torch.allclose(advantages, per_row(plain_dr_grpo(penalised.tolist())), atol=1e-5)
