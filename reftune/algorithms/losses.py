"""Losses and the token-level quantities they are built from. Shapes: B rows, T tokens, V vocab."""
from __future__ import annotations

import torch
from torch import Tensor


def token_logps(logits: Tensor, sequences: Tensor) -> Tensor:
    """Log-prob of each token given the ones before it.

    logits: (B, T, V) from a forward pass over sequences (B, T). Returns (B, T), aligned with the
    tokens (position 0, which nothing predicts, is 0), so it masks with response_mask directly.
    """
    logps = chosen_logps(logits[:, :-1], sequences[:, 1:])
    return torch.cat([logps.new_zeros(logps.size(0), 1), logps], dim=1)


def chosen_logps(logits: Tensor, tokens: Tensor) -> Tensor:
    """Log-prob of each token under the distribution given for it: logits (B, T, V), tokens (B, T)."""
    return logits.float().log_softmax(-1).gather(-1, tokens[..., None]).squeeze(-1)


def masked_sum(values: Tensor, mask: Tensor) -> Tensor:
    """Sum of values where mask is 1; values, mask: same shape."""
    return (values * mask).sum()


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of values where mask is 1 (0 when the mask is empty)."""
    return masked_sum(values, mask) / mask.sum().clamp(min=1)


def sft_loss_sum(logits: Tensor, sequences: Tensor, target_mask: Tensor) -> Tensor:
    """Summed negative log-likelihood of the target tokens (the prompt is masked out).

    logits: (B, T, V); sequences, target_mask: (B, T), target_mask 1 on target tokens and EOS.
    The caller divides by the number of target tokens in the whole optimizer step, so the loss is
    the same whatever the split into micro-batches and processes.
    """
    return -masked_sum(token_logps(logits, sequences), target_mask)


def policy_loss(logps: Tensor, old_logps: Tensor, advantages: Tensor, mask: Tensor,
                clip_range: float) -> tuple[Tensor, Tensor]:
    """PPO's clipped surrogate, as a loss: mean over masked tokens of
    max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)), ratio = exp(logp - logp_old).

    All (B, T). Returns the loss and the fraction of tokens where the clipped term was chosen.
    """
    ratio = torch.exp(logps - old_logps)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    return loss, masked_mean((clipped > unclipped).float(), mask)


def value_loss(values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip_range: float) -> Tensor:
    """0.5 * mean over masked tokens of max((V - R)^2, (clip(V, V_old +- eps) - R)^2). All (B, T)."""
    clipped = old_values + (values - old_values).clamp(-clip_range, clip_range)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


def kl_penalty(logps: Tensor, ref_logps: Tensor, estimator: str = "k1") -> Tensor:
    """Per-token estimate of KL(policy || reference) from tokens sampled from the policy. (B, T).

    k1 = log r (unbiased, can be negative; the paper's); k2 = (log r)^2 / 2;
    k3 = r' - 1 - log r' with r' = p_ref / p (unbiased and never negative: Schulman's note).
    """
    log_ratio = logps - ref_logps
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio ** 2
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}: use k1, k2 or k3")


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Entropy of each position's next-token distribution: (B, T, V) -> (B, T)."""
    logps = logits.float().log_softmax(-1)
    return -(logps.exp() * logps).sum(-1)


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> float:
    """1 - Var[R - V] / Var[R] over masked tokens: 1 is a perfect value head, <= 0 a useless one."""
    residual_var = masked_mean((returns - values - masked_mean(returns - values, mask)) ** 2, mask)
    returns_var = masked_mean((returns - masked_mean(returns, mask)) ** 2, mask)
    return float(1.0 - residual_var / returns_var) if returns_var > 0 else float("nan")
