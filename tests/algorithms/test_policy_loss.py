"""The clipping variants, the sequence-level ratio and the loss aggregations against plain loops."""
import math

import pytest
import torch

from reftune.algorithms.losses import (KL_ESTIMATORS, LOSS_AGGREGATIONS, aggregate, drop_truncated, kl_penalty,
                                       log_importance_ratio, policy_loss, policy_loss_terms)

# Three rows, right padding; row 1's advantage is negative. ratio = exp(logp - old) per token.
MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.float32)
OLD = torch.tensor([[-1.0, -1.0, -1.0, 0.0], [-1.0, -2.0, 0.0, 0.0], [-0.5, -0.5, -0.5, -0.5]])
LOGPS = torch.tensor([[-0.5, -1.0, -1.3, 0.0], [-0.2, -3.0, 0.0, 0.0], [-0.5, -0.1, -0.6, -0.45]])
ADVANTAGES = torch.tensor([[1.0], [-2.0], [0.5]]) * MASK


def plain_token_losses(logps, old, advantages, mask, low, high, dual_clip=None, sequence=False):
    """One loss per masked token, row by row, as the papers write it."""
    rows = []
    for lp_row, old_row, a_row, m_row in zip(logps.tolist(), old.tolist(), advantages.tolist(), mask.tolist()):
        tokens = [t for t, m in enumerate(m_row) if m]
        sequence_ratio = math.exp(sum(lp_row[t] - old_row[t] for t in tokens) / len(tokens))
        row = []
        for t in tokens:
            ratio = sequence_ratio if sequence else math.exp(lp_row[t] - old_row[t])
            a = a_row[t]
            loss = max(-a * ratio, -a * min(max(ratio, 1 - low), 1 + high))
            if dual_clip is not None and a < 0:
                loss = min(loss, dual_clip * -a)
            row.append(loss)
        rows.append(row)
    return rows


def plain_aggregate(rows, mode, max_length=8):
    if mode == "token_mean":
        return sum(sum(row) for row in rows) / sum(len(row) for row in rows)
    if mode == "seq_mean_token_mean":
        return sum(sum(row) / len(row) for row in rows) / len(rows)
    return sum(sum(row) / max_length for row in rows) / len(rows)


def terms(**options):
    options.setdefault("clip_range", 0.2)
    return policy_loss_terms(LOGPS, OLD, ADVANTAGES, MASK, max_response_length=8, **options)


@pytest.mark.parametrize("mode", sorted(LOSS_AGGREGATIONS))
@pytest.mark.parametrize("options", [{}, {"clip_range_high": 0.28}, {"dual_clip": 1.5},
                                     {"importance_sampling": "sequence"}])
def test_policy_loss_terms_match_a_plain_loop(mode, options):
    got = terms(aggregation=mode, **options)
    plain_rows = plain_token_losses(LOGPS, OLD, ADVANTAGES, MASK, 0.2, options.get("clip_range_high", 0.2),
                                    options.get("dual_clip"), options.get("importance_sampling") == "sequence")
    normaliser = LOSS_AGGREGATIONS[mode].normaliser(MASK)
    assert (got.loss_sum / normaliser).item() == pytest.approx(plain_aggregate(plain_rows, mode), rel=1e-5)


def test_policy_loss_keeps_its_result_and_equals_the_token_mean_terms():
    loss, clipped = policy_loss(LOGPS, OLD, ADVANTAGES, MASK, clip_range=0.2)
    rows = plain_token_losses(LOGPS, OLD, ADVANTAGES, MASK, 0.2, 0.2)
    assert loss.item() == pytest.approx(plain_aggregate(rows, "token_mean"), rel=1e-6)
    assert torch.equal(loss, terms().loss_sum / MASK.sum()) and torch.equal(clipped, terms().clip_fraction)


def test_clip_higher_clips_positive_advantages_at_its_own_bound_only():
    ratio = torch.tensor([[1.5, 1.25, 0.5, 1.5]])
    logps, old, mask = ratio.log(), torch.zeros(1, 4), torch.ones(1, 4)
    advantages = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    got = policy_loss_terms(logps, old, advantages, mask, clip_range=0.2, clip_range_high=0.28,
                            aggregation="seq_mean_token_sum_norm", max_response_length=1)
    # A > 0: capped at 1 + 0.28 (1.25 passes unclipped); A < 0: floor 1 - 0.2 unchanged, no upper cap
    assert got.loss_sum.item() == pytest.approx(-1.28 - 1.25 + 0.8 + 1.5, rel=1e-5)
    assert got.clip_fraction_high.item() == pytest.approx(0.25) and got.clip_fraction_low.item() == pytest.approx(0.25)
    symmetric = policy_loss_terms(logps, old, advantages, mask, clip_range=0.2)
    assert symmetric.clip_fraction_high.item() == pytest.approx(0.5)  # 1.25 > 1.2 now clips too


def test_dual_clip_bounds_negative_advantage_losses_at_c_times_the_advantage():
    ratio = torch.tensor([[10.0, 2.0, 10.0]])
    advantages = torch.tensor([[-2.0, -2.0, 2.0]])
    got = policy_loss_terms(ratio.log(), torch.zeros(1, 3), advantages, torch.ones(1, 3), clip_range=0.2,
                            dual_clip=3.0, aggregation="seq_mean_token_sum_norm", max_response_length=1)
    # token 0: 20 capped at 3 * 2 = 6; token 1: 4 < 6 stays; token 2 (A > 0): -2 * 1.2, no cap
    assert got.loss_sum.item() == pytest.approx(6.0 + 4.0 - 2.4, rel=1e-5)
    assert got.dual_clip_fraction.item() == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="dual_clip must be > 1"):
        policy_loss_terms(ratio.log(), torch.zeros(1, 3), advantages, torch.ones(1, 3), clip_range=0.2, dual_clip=1.0)


def test_sequence_ratio_is_exp_of_the_mean_token_log_ratio():
    log_ratio = log_importance_ratio(LOGPS, OLD, MASK, "sequence")
    for row in range(3):
        tokens = MASK[row].bool()
        expected = (LOGPS[row, tokens] - OLD[row, tokens]).mean()
        assert log_ratio[row, 0].item() == pytest.approx(expected.item(), abs=1e-6)
    assert log_ratio.shape == (3, 1)  # one ratio applied to every token of the row
    assert torch.equal(log_importance_ratio(LOGPS, OLD, MASK, "token"), LOGPS - OLD)


def test_sequence_ratio_gradient_reaches_every_token_of_the_row():
    logps = LOGPS.clone().requires_grad_(True)
    policy_loss_terms(logps, OLD, ADVANTAGES, MASK, clip_range=10.0, importance_sampling="sequence").loss_sum.backward()
    assert (logps.grad[MASK.bool()] != 0).all() and (logps.grad[~MASK.bool()] == 0).all()


@pytest.mark.parametrize("mode", sorted(LOSS_AGGREGATIONS))
def test_micro_batched_aggregation_equals_the_whole_batch(mode):
    torch.manual_seed(0)
    token_losses = torch.randn(7, 6)
    lengths = torch.tensor([6, 1, 3, 0, 5, 2, 4])  # one row fully masked (e.g. a truncated answer)
    mask = (torch.arange(6)[None, :] < lengths[:, None]).float()
    aggregation = LOSS_AGGREGATIONS[mode]
    whole = aggregate(token_losses, mask, mode, max_response_length=6)
    normaliser = aggregation.normaliser(mask)  # over the whole minibatch, as the loop computes once
    for cuts in ([0, 7], [0, 3, 7], [0, 1, 2, 4, 7], list(range(8))):
        parts = [aggregation.partial_sum(token_losses[a:b], mask[a:b], 6) for a, b in zip(cuts, cuts[1:])]
        assert (sum(parts) / normaliser).item() == pytest.approx(whole.item(), rel=1e-6)


@pytest.mark.parametrize("mode", sorted(LOSS_AGGREGATIONS))
@pytest.mark.parametrize("level", ["token", "sequence"])
def test_micro_batched_policy_loss_equals_the_whole_batch(mode, level):
    """As the update loop uses it: rows cut into micro-batches, each trimmed of the padding columns no
    row of it reaches, partial sums divided by the whole minibatch's normaliser."""
    options = dict(clip_range=0.2, clip_range_high=0.28, dual_clip=3.0, importance_sampling=level,
                   aggregation=mode, max_response_length=8)
    whole = policy_loss_terms(LOGPS, OLD, ADVANTAGES, MASK, **options).loss_sum
    normaliser = LOSS_AGGREGATIONS[mode].normaliser(MASK)
    parts = []
    for rows in (slice(0, 2), slice(2, 3)):
        columns = slice(0, int(MASK[rows].sum(dim=1).max()))
        parts.append(policy_loss_terms(LOGPS[rows, columns], OLD[rows, columns], ADVANTAGES[rows, columns],
                                       MASK[rows, columns], **options).loss_sum)
    assert (sum(parts) / normaliser).item() == pytest.approx((whole / normaliser).item(), rel=1e-6)


def test_aggregations_weigh_rows_differently():
    token_losses = torch.tensor([[1.0, 1.0, 1.0, 1.0], [3.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    assert aggregate(token_losses, mask, "token_mean").item() == pytest.approx(7 / 5)
    assert aggregate(token_losses, mask, "seq_mean_token_mean").item() == pytest.approx((1 + 3) / 2)
    assert aggregate(token_losses, mask, "seq_mean_token_sum_norm", 4).item() == pytest.approx((4 / 4 + 3 / 4) / 2)
    with pytest.raises(ValueError, match="max_response_length"):
        aggregate(token_losses, mask, "seq_mean_token_sum_norm")
    with pytest.raises(ValueError, match="unknown loss aggregation"):
        aggregate(token_losses, mask, "sum")


def test_drop_truncated_masks_whole_rows_cut_at_the_length_limit():
    dropped = drop_truncated(MASK, torch.tensor([True, False, True]))
    assert torch.equal(dropped[0], MASK[0]) and (dropped[1] == 0).all() and torch.equal(dropped[2], MASK[2])


def test_kl_table_and_kl_penalty_agree():
    torch.manual_seed(0)
    logps, ref = torch.randn(2, 5), torch.randn(2, 5)
    for name, estimator in KL_ESTIMATORS.items():
        assert torch.equal(kl_penalty(logps, ref, name), estimator(logps, ref))
    assert (KL_ESTIMATORS["k2"](logps, ref) >= 0).all() and (KL_ESTIMATORS["k3"](logps, ref) >= 0).all()
    with pytest.raises(ValueError, match="unknown KL estimator"):
        kl_penalty(logps, ref, "k4")
