"""Advantage estimators, picked by name: GAE with a value head (the paper) or group-normalised
sequence scores without one (the GRPO family). B rows, T tokens; response_mask is 1 on generated
tokens, which are contiguous and followed only by padding."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

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
    response_mask: (B, T). Returns (B, T). A group with identical scores gets 0 everywhere.
    """
    groups = scores.view(-1, num_samples_per_question)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if scale_by_std:
        centred = centred / (groups.std(dim=1, keepdim=True, unbiased=False) + eps)
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


def estimate_gae(rewards: Tensor, values: Tensor, response_mask: Tensor, *, gamma: float, lam: float,
                 num_samples_per_question: int) -> tuple[Tensor, Tensor]:
    """GAE advantages and returns (advantages + values on response tokens), both (B, T)."""
    advantages = gae_advantages(rewards, values, response_mask, gamma, lam)
    return advantages, (advantages + values) * response_mask


def estimate_group(rewards: Tensor, values: Tensor, response_mask: Tensor, *, gamma: float, lam: float,
                   num_samples_per_question: int) -> tuple[Tensor, Tensor]:
    """Group advantages from each row's total reward; no value head, so the returns are zeros."""
    scores = (rewards * response_mask).sum(dim=1)
    advantages = group_advantages(scores, response_mask, num_samples_per_question)
    return advantages, torch.zeros_like(advantages)


ADVANTAGE_ESTIMATORS = {"gae": estimate_gae, "group": estimate_group}
