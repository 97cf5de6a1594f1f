import math

import torch

from reftune.algorithms.losses import masked_mean, sft_loss_sum, token_logps


def test_token_logps_matches_a_plain_loop():
    torch.manual_seed(0)
    logits, ids = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    got = token_logps(logits, ids)
    for b in range(2):
        assert got[b, 0] == 0
        for t in range(1, 5):
            expected = logits[b, t - 1].log_softmax(-1)[ids[b, t]]
            assert math.isclose(got[b, t].item(), expected.item(), rel_tol=1e-5)


def test_sft_loss_counts_only_target_tokens():
    torch.manual_seed(0)
    logits, ids = torch.randn(1, 4, 6), torch.randint(0, 6, (1, 4))
    target = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    changed = logits.clone()
    changed[0, 0] += 5.0  # predicts token 1, a prompt token: must not matter
    assert torch.allclose(sft_loss_sum(logits, ids, target), sft_loss_sum(changed, ids, target))
    expected = -(logits[0, 1].log_softmax(-1)[ids[0, 2]] + logits[0, 2].log_softmax(-1)[ids[0, 3]])
    assert torch.allclose(sft_loss_sum(logits, ids, target), expected)


def test_masked_mean_ignores_masked_values_and_survives_an_empty_mask():
    values = torch.tensor([[1.0, 100.0, 3.0]])
    assert masked_mean(values, torch.tensor([[1.0, 0.0, 1.0]])) == 2.0
    assert masked_mean(values, torch.zeros(1, 3)) == 0.0


def test_policy_loss_matches_a_plain_loop_and_counts_clipping():
    from reftune.algorithms.losses import policy_loss

    logps = torch.tensor([[0.0, -0.1, -1.0, -2.0]])
    old = torch.tensor([[0.0, -0.5, -1.0, -1.0]])
    adv = torch.tensor([[0.0, 1.0, -1.0, -2.0]])
    mask = torch.tensor([[0, 1, 1, 1]])
    loss, clipped = policy_loss(logps, old, adv, mask, clip_range=0.2)
    terms = []
    for lp, o, a in [(-0.1, -0.5, 1.0), (-1.0, -1.0, -1.0), (-2.0, -1.0, -2.0)]:
        ratio = math.exp(lp - o)
        terms.append(max(-a * ratio, -a * min(max(ratio, 0.8), 1.2)))
    assert math.isclose(loss.item(), sum(terms) / 3, rel_tol=1e-5)
    assert math.isclose(clipped.item(), 2 / 3, rel_tol=1e-5)  # tokens 1 (ratio 1.49) and 3 (0.37)


def test_value_loss_takes_the_larger_of_clipped_and_unclipped():
    from reftune.algorithms.losses import value_loss

    values, old, returns = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    # token 0: (1-0)^2=1 vs clipped (0.2-0)^2=0.04 -> 1; token 1: (0-1)^2 = 1 both
    assert math.isclose(value_loss(values, old, returns, torch.ones(1, 2), 0.2).item(), 0.5 * (1 + 1) / 2)


def test_kl_estimators_by_hand():
    from reftune.algorithms.losses import kl_penalty

    logps, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    assert math.isclose(kl_penalty(logps, ref, "k1").item(), math.log(2), rel_tol=1e-6)
    assert math.isclose(kl_penalty(logps, ref, "k2").item(), 0.5 * math.log(2) ** 2, rel_tol=1e-6)
    assert math.isclose(kl_penalty(logps, ref, "k3").item(), 0.5 - 1 + math.log(2), rel_tol=1e-6)
    assert kl_penalty(ref, logps, "k3").item() >= 0


def test_explained_variance_is_one_for_perfect_values():
    from reftune.algorithms.losses import explained_variance

    returns = torch.tensor([[1.0, 2.0, 3.0]])
    assert explained_variance(returns, returns, torch.ones(1, 3)) == 1.0
    assert explained_variance(torch.zeros(1, 3) + 2.0, returns, torch.ones(1, 3)) == 0.0
