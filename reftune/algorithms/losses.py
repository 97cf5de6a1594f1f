"""Losses and the token-level quantities they are built from. Shapes: B rows, T tokens, V vocab."""
from __future__ import annotations

import torch
from torch import Tensor


def token_logps(logits: Tensor, sequences: Tensor) -> Tensor:
    """Log-prob of each token given the ones before it.

    logits: (B, T, V) from a forward pass over sequences (B, T). Returns (B, T), aligned with the
    tokens (position 0, which nothing predicts, is 0), so it masks with response_mask directly.
    """
    logps = logits[:, :-1].float().log_softmax(-1).gather(-1, sequences[:, 1:, None]).squeeze(-1)
    return torch.cat([logps.new_zeros(logps.size(0), 1), logps], dim=1)


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
