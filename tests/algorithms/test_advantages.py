import pytest
import torch

from reftune.algorithms.advantages import (estimate_gae, gae_advantages, group_advantages,
                                           token_rewards, whiten)


def plain_gae(rewards, values, mask, gamma, lam):
    """Textbook GAE, one row at a time, over the response tokens only."""
    out = []
    for r_row, v_row, m_row in zip(rewards.tolist(), values.tolist(), mask.tolist()):
        positions = [t for t, m in enumerate(m_row) if m]
        row = [0.0] * len(m_row)
        running = 0.0
        for i in reversed(range(len(positions))):
            t = positions[i]
            next_value = v_row[positions[i + 1]] if i + 1 < len(positions) else 0.0
            delta = r_row[t] + gamma * next_value - v_row[t]
            running = delta + gamma * lam * running
            row[t] = running
        out.append(row)
    return torch.tensor(out)


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.5), (1.0, 1.0)])
def test_gae_matches_plain_loop(gamma, lam):
    torch.manual_seed(0)
    rewards, values = torch.randn(3, 7), torch.randn(3, 7)
    mask = torch.tensor([[0, 0, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 0, 0, 0]])
    got = gae_advantages(rewards, values, mask, gamma, lam)
    assert torch.allclose(got, plain_gae(rewards, values, mask, gamma, lam), atol=1e-5)
    assert (got[mask == 0] == 0).all()


def test_gae_with_lambda_one_and_zero_values_is_the_return_to_go():
    rewards = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    advantages, returns = estimate_gae(rewards, torch.zeros(1, 4), torch.ones(1, 4), gamma=1.0, lam=1.0,
                                       num_samples_per_question=1)
    assert advantages.tolist() == [[6.0, 6.0, 5.0, 3.0]] and torch.equal(advantages, returns)


def test_whiten_removes_the_mean_over_masked_entries_only():
    values = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    out = whiten(values, mask)
    assert out[0, 3] == 0 and abs(out[0, :3].mean()) < 1e-6
    assert torch.allclose(out[0, :3].pow(2).mean(), torch.tensor(1.0), atol=1e-4)


def test_whiten_across_processes_equals_whiten_of_the_concatenation():
    torch.manual_seed(0)
    a, b = torch.randn(2, 5), torch.randn(3, 5)
    mask_a, mask_b = torch.randint(0, 2, (2, 5)), torch.randint(0, 2, (3, 5))
    together = whiten(torch.cat([a, b]), torch.cat([mask_a, mask_b]))
    # Simulate the all-reduce: process a's partial sums, added to b's when b reduces.
    seen = []
    whiten(a, mask_a, lambda stats: seen.append(stats) or stats)
    from_b = whiten(b, mask_b, lambda stats: stats + seen[0])
    assert torch.allclose(from_b, together[2:], atol=1e-5)


def test_group_advantages_centre_each_group_and_zero_identical_groups():
    scores = torch.tensor([1.0, 0.0, 0.1, 0.1, 0.1, 0.1])
    mask = torch.ones(6, 2)
    out = group_advantages(scores, mask, num_samples_per_question=3, scale_by_std=False)
    assert torch.allclose(out[:3, 0], torch.tensor([1.0, 0.0, 0.1]) - 1.1 / 3)
    assert (out[3:] == 0).all()
    scaled = group_advantages(scores, mask, num_samples_per_question=3)
    assert torch.allclose(scaled[:3, 0].std(), torch.tensor(1.0), atol=1e-4)


def test_group_std_is_the_unbiased_one_as_in_verl_trl_and_openrlhf():
    # K = 2, scores 1 and 0: population std 0.5 gives +-2; the unbiased std (0.707) gives +-1.414
    out = group_advantages(torch.tensor([1.0, 0.0]), torch.ones(2, 1), num_samples_per_question=2)
    assert out.flatten().tolist() == pytest.approx([0.7071, -0.7071], abs=1e-4)


def test_a_float32_group_of_identical_scores_gets_exactly_zero():
    scores = torch.full((64,), 0.1, dtype=torch.float32)  # its float32 mean is not exactly 0.1
    assert float((scores - scores.mean()).abs().max()) > 0
    assert (group_advantages(scores, torch.ones(64, 3), num_samples_per_question=64) == 0).all()
    assert (group_advantages(scores, torch.ones(64, 3), 64, scale_by_std=False) == 0).all()


def test_token_rewards_put_the_score_on_the_last_response_token():
    kl = torch.full((2, 5), 0.5)
    mask = torch.tensor([[0, 1, 1, 1, 0], [0, 0, 1, 1, 1]])
    rewards = token_rewards(torch.tensor([1.0, 0.1]), kl, mask, kl_coef=0.1)
    assert rewards.tolist()[0] == pytest.approx([0, -0.05, -0.05, 0.95, 0])
    assert rewards.tolist()[1] == pytest.approx([0, 0, -0.05, -0.05, 0.05])


def whiten_in_a_process_group(rank: int, folder: str, parts: list) -> None:
    """One of two gloo processes: whiten this rank's part with a real all-reduce; save the result."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2)
    values, mask = parts[rank]

    def sum_across_processes(stats):
        dist.all_reduce(stats)
        return stats
    torch.save(whiten(values, mask, sum_across_processes), f"{folder}/rank{rank}.pt")
    dist.destroy_process_group()


def test_whiten_across_two_real_processes_equals_whiten_of_the_concatenation(tmp_path):
    torch.manual_seed(1)
    parts = [(torch.randn(2, 5), torch.randint(0, 2, (2, 5))), (torch.randn(3, 5), torch.randint(0, 2, (3, 5)))]
    torch.multiprocessing.spawn(whiten_in_a_process_group, args=(str(tmp_path), parts), nprocs=2)
    together = whiten(torch.cat([parts[0][0], parts[1][0]]), torch.cat([parts[0][1], parts[1][1]]))
    got = torch.cat([torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)])
    assert torch.allclose(got, together, atol=1e-5)
    assert not torch.allclose(got[:2], whiten(*parts[0]), atol=1e-3)  # each alone would differ
