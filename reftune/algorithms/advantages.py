"""Advantage estimators, picked by name from ADVANTAGE_ESTIMATORS: GAE with a value head (the paper)
or a baseline from the other samples of the same question without one (GRPO, Dr. GRPO, RLOO,
REINFORCE++-baseline). B rows, T tokens; response_mask is 1 on generated tokens, which are contiguous
and followed only by padding. The K samples of a question sit in adjacent rows."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from reftune.errors import ReftuneError

SumAcrossProcesses = Callable[[Tensor], Tensor]


def gae_advantages(rewards: Tensor, values: Tensor, response_mask: Tensor, gamma: float, lam: float) -> Tensor:
    """Generalised advantage estimation over response tokens.

    rewards, values, response_mask: (B, T). Returns (B, T), 0 where response_mask is 0.
    After the last response token the value is 0 (the episode ends), so its advantage is
    reward - value.
    """
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    mask = response_mask.to(rewards.dtype)
    for t in reversed(range(rewards.size(1))):
        next_mask = mask[:, t + 1] if t + 1 < rewards.size(1) else torch.zeros_like(running)
        next_value = values[:, t + 1] * next_mask if t + 1 < rewards.size(1) else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * next_mask * running
        advantages[:, t] = running * mask[:, t]
    return advantages


def whiten(values: Tensor, mask: Tensor, sum_across_processes: SumAcrossProcesses | None = None,
           eps: float = 1e-8) -> Tensor:
    """(values - mean) / std over the masked entries of all processes; 0 where mask is 0.

    values, mask: (B, T). sum_across_processes: an all-reduce sum (None: this process alone).
    """
    mask = mask.to(values.dtype)
    # One all-reduce of (count, sum, sum of squares): no partial depends on the global mean.
    stats = torch.stack([mask.sum(), (values * mask).sum(), (values ** 2 * mask).sum()])
    if sum_across_processes is not None:
        stats = sum_across_processes(stats)
    count = stats[0].clamp(min=1)
    mean = stats[1] / count
    variance = (stats[2] / count - mean ** 2).clamp(min=0)
    return (values - mean) * torch.rsqrt(variance + eps) * mask


def group_advantages(scores: Tensor, response_mask: Tensor, num_samples_per_question: int,
                     scale_by_std: bool = True, eps: float = 1e-6) -> Tensor:
    """Each sample's score minus the mean of its question's group (divided by the group's std when
    scale_by_std), given to every response token.

    scores: (B,), with the K = num_samples_per_question samples of a question adjacent.
    response_mask: (B, T). Returns (B, T). A group with identical scores gets exactly 0 everywhere
    (in float32 the mean of 64 scores of 0.1 is not 0.1, and dividing that rounding by a std of the
    same size would turn it into an advantage). The std is the unbiased one (divisor K - 1), as in
    verl, TRL and OpenRLHF.

    >>> [round(a, 4) for a in group_advantages(torch.tensor([1.0, 0.0, 0.1, 0.1]), torch.ones(4, 1), 2).flatten().tolist()]
    [0.7071, -0.7071, 0.0, 0.0]
    """
    groups = scores.view(-1, num_samples_per_question)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if scale_by_std:
        centred = centred / (groups.std(dim=1, keepdim=True) + eps)
    uniform = groups.amax(dim=1, keepdim=True) == groups.amin(dim=1, keepdim=True)
    centred = centred.masked_fill(uniform, 0.0)
    return centred.reshape(-1, 1) * response_mask.to(scores.dtype)


def last_token_index(response_mask: Tensor) -> Tensor:
    """(B, T) -> (B,): position of each row's last response token (its EOS, when it stopped)."""
    positions = torch.arange(response_mask.size(1), device=response_mask.device)
    return (positions * response_mask).argmax(dim=1)


def token_rewards(scores: Tensor, kl: Tensor, response_mask: Tensor, kl_coef: float) -> Tensor:
    """The paper's reward per token: -beta * KL on every response token, plus the answer's score on
    the last one. scores: (B,); kl, response_mask: (B, T). Returns (B, T)."""
    rewards = -kl_coef * kl * response_mask
    rows = torch.arange(len(scores), device=scores.device)
    rewards[rows, last_token_index(response_mask)] += scores
    return rewards


def leave_one_out_advantages(scores: Tensor, response_mask: Tensor, num_samples_per_question: int) -> Tensor:
    """Each sample's score minus the mean of the OTHER samples of its question, given to every
    response token (RLOO: Ahmadian et al. 2024, "Back to Basics"; verl/OpenRLHF `rloo`).

    scores: (B,), the K = num_samples_per_question samples of a question adjacent, K >= 2.
    response_mask: (B, T). Returns (B, T).
    """
    require_groups(num_samples_per_question, "the rloo estimator")
    groups = scores.view(-1, num_samples_per_question)
    others_mean = (groups.sum(dim=1, keepdim=True) - groups) / (num_samples_per_question - 1)
    return (groups - others_mean).reshape(-1, 1) * response_mask.to(scores.dtype)


def batch_normalised_group_advantages(scores: Tensor, response_mask: Tensor, num_samples_per_question: int,
                                      sum_across_processes: SumAcrossProcesses | None = None) -> Tensor:
    """Group-mean baseline, then whitened over every response token of the batch (all processes):
    REINFORCE++-baseline (Hu 2025; OpenRLHF `reinforce_baseline`), whose normalisation uses the
    batch's spread, not each group's, so easy and hard questions keep their scale.

    scores: (B,), the K samples of a question adjacent, K >= 2. response_mask: (B, T). Returns (B, T).
    """
    require_groups(num_samples_per_question, "the reinforce_baseline estimator")
    centred = group_advantages(scores, response_mask, num_samples_per_question, scale_by_std=False)
    return whiten(centred, response_mask, sum_across_processes)


def require_groups(num_samples_per_question: int, what: str) -> None:
    """A baseline from the other samples of a question needs at least two of them; `what` names the
    estimator (or option) that compares them."""
    if num_samples_per_question < 2:
        raise ReftuneError(f"{what} compares the samples of a question: set num_samples_per_question >= 2 (e.g. 4), "
                           f"not {num_samples_per_question}")


def sequence_scores(rewards: Tensor, response_mask: Tensor) -> Tensor:
    """(B, T) token rewards -> (B,) each row's total: the answer's score minus its summed KL penalty."""
    return (rewards * response_mask).sum(dim=1)


# The estimators: one signature, so the loop calls each the same way. rewards, values,
# response_mask: (B, T); returns (advantages, returns), both (B, T). The group family has no value
# head: its returns are zeros. sum_across_processes: an all-reduce sum for batch statistics (None:
# this process alone).

def estimate_gae(rewards: Tensor, values: Tensor, response_mask: Tensor, *, gamma: float, lam: float,
                 num_samples_per_question: int,
                 sum_across_processes: SumAcrossProcesses | None = None) -> tuple[Tensor, Tensor]:
    """GAE advantages and returns (advantages + values on response tokens), both (B, T), from the
    token rewards and values (B, T). The paper's estimator; the only one that reads values."""
    advantages = gae_advantages(rewards, values, response_mask, gamma, lam)
    return advantages, (advantages + values) * response_mask


def estimate_group(rewards: Tensor, values: Tensor, response_mask: Tensor, *, gamma: float, lam: float,
                   num_samples_per_question: int,
                   sum_across_processes: SumAcrossProcesses | None = None) -> tuple[Tensor, Tensor]:
    """GRPO (Shao et al. 2024, DeepSeekMath; verl `grpo`, OpenRLHF `group_norm`): each row's total
    reward (B,) centred and scaled by its group's mean and (unbiased) std, on every response token.
    (B, T) each; returns zeros (no value head)."""
    require_groups(num_samples_per_question, "the group estimator")
    scores = sequence_scores(rewards, response_mask)
    advantages = group_advantages(scores, response_mask, num_samples_per_question)
    return advantages, torch.zeros_like(advantages)


def estimate_dr_grpo(rewards: Tensor, values: Tensor, response_mask: Tensor, *, gamma: float, lam: float,
                     num_samples_per_question: int,
                     sum_across_processes: SumAcrossProcesses | None = None) -> tuple[Tensor, Tensor]:
    """Group mean removed, no division by the group's std (which favours questions that are almost
    always right or wrong): Dr. GRPO, Liu et al. 2025; OpenRLHF `dr_grpo`, TRL `scale_rewards=False`.
    (B, T) each; returns zeros."""
    require_groups(num_samples_per_question, "the dr_grpo estimator")
    scores = sequence_scores(rewards, response_mask)
    advantages = group_advantages(scores, response_mask, num_samples_per_question, scale_by_std=False)
    return advantages, torch.zeros_like(advantages)


def estimate_rloo(rewards: Tensor, values: Tensor, response_mask: Tensor, *, gamma: float, lam: float,
                  num_samples_per_question: int,
                  sum_across_processes: SumAcrossProcesses | None = None) -> tuple[Tensor, Tensor]:
    """RLOO: each row's total reward minus the mean of its question's other samples (see
    leave_one_out_advantages). (B, T) each; returns zeros."""
    scores = sequence_scores(rewards, response_mask)
    advantages = leave_one_out_advantages(scores, response_mask, num_samples_per_question)
    return advantages, torch.zeros_like(advantages)


def estimate_reinforce_baseline(rewards: Tensor, values: Tensor, response_mask: Tensor, *, gamma: float,
                                lam: float, num_samples_per_question: int,
                                sum_across_processes: SumAcrossProcesses | None = None) -> tuple[Tensor, Tensor]:
    """REINFORCE++-baseline: group-mean baseline, then whitened over the batch's response tokens of
    all processes (see batch_normalised_group_advantages). (B, T) each; returns zeros."""
    scores = sequence_scores(rewards, response_mask)
    advantages = batch_normalised_group_advantages(scores, response_mask, num_samples_per_question,
                                                   sum_across_processes)
    return advantages, torch.zeros_like(advantages)


ADVANTAGE_ESTIMATORS = {
    "gae": estimate_gae,                                # the paper's PPO: value head, GAE(gamma, lambda)
    "group": estimate_group,                            # GRPO (DeepSeekMath): group mean and std
    "dr_grpo": estimate_dr_grpo,                        # Dr. GRPO: group mean, no std
    "rloo": estimate_rloo,                              # RLOO: mean of the other K - 1 samples
    "reinforce_baseline": estimate_reinforce_baseline,  # REINFORCE++-baseline: group mean, batch std
}
VALUE_HEAD_ESTIMATORS = frozenset({"gae"})
"""The estimators that read `values` (and need a value head); the others ignore it."""
