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
