"""Losses and the token-level quantities they are built from. Shapes: B rows, T tokens, V vocab.

The RL variants are tables picked by name: LOSS_AGGREGATIONS (how token losses become one number)
and KL_ESTIMATORS; policy_loss_terms holds the clipping variants (clip-higher, dual-clip, GSPO's
sequence-level ratio)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from reftune.errors import ReftuneError, check_choice


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


def token_count(mask: Tensor) -> Tensor:
    """Number of masked tokens, at least 1 (a divisor). mask: (B, T) -> ()."""
    return mask.sum().clamp(min=1)


def drop_truncated(response_mask: Tensor, finished: Tensor) -> Tensor:
    """The response mask without the rows cut at the length limit, whose unfinished answer says
    little about the reasoning (DAPO's overlong filtering; TRL `mask_truncated_completions`).

    response_mask: (B, T); finished: (B,) bool, True where the row ended with a stop token.
    Returns (B, T). Their rewards still count in their group's baseline; only their loss goes.
    """
    return response_mask * finished.to(response_mask.dtype)[:, None]


def sft_loss_sum(logits: Tensor, sequences: Tensor, target_mask: Tensor) -> Tensor:
    """Summed negative log-likelihood of the target tokens (the prompt is masked out).

    logits: (B, T, V); sequences, target_mask: (B, T), target_mask 1 on target tokens and EOS.
    The caller divides by the number of target tokens in the whole optimizer step, so the loss is
    the same whatever the split into micro-batches and processes.
    """
    return -masked_sum(token_logps(logits, sequences), target_mask)


def policy_loss(logps: Tensor, old_logps: Tensor, advantages: Tensor, mask: Tensor,
                clip_range: float) -> tuple[Tensor, Tensor]:
    """PPO's clipped surrogate, as a loss: mean over all masked tokens of
    max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)), ratio = exp(logp - logp_old).

    All (B, T). Returns the loss and the fraction of tokens where the clipped term was chosen.
    PPO's textbook loss (token_mean); policy_loss_terms has the variants and the authors' aggregation.
    """
    terms = policy_loss_terms(logps, old_logps, advantages, mask, clip_range=clip_range)
    return terms.loss_sum / token_count(mask), terms.clip_fraction


def value_token_losses(values: Tensor, old_values: Tensor, returns: Tensor, clip_range: float) -> Tensor:
    """PPO's clipped value loss per token, 0.5 * max((V - R)^2, (clip(V, V_old +- eps) - R)^2). All (B, T)."""
    clipped = old_values + (values - old_values).clamp(-clip_range, clip_range)
    return 0.5 * torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)


def value_loss(values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip_range: float,
               aggregation: str = "seq_mean_token_mean") -> Tensor:
    """The clipped value loss of a whole minibatch, its token losses aggregated by the named mode
    (the ReFT authors' code: each row's mean over its tokens, then the mean over rows). All (B, T).

    >>> rows = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    >>> mask = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    >>> float(value_loss(rows, rows, torch.zeros(2, 3), mask, 0.2)), float(value_loss(rows, rows, torch.zeros(2, 3), mask, 0.2, "token_mean"))
    (1.0, 0.5)
    """
    return aggregate(value_token_losses(values, old_values, returns, clip_range), mask, aggregation)


# KL(policy || reference) estimated per token from tokens sampled from the policy; each (B, T) from
# logps, ref_logps (B, T), log r = logp - logp_ref (Schulman, "Approximating KL divergence", 2020).

def kl_k1(logps: Tensor, ref_logps: Tensor) -> Tensor:
    """log r, (B, T): unbiased, can be negative (the paper's)."""
    return logps - ref_logps


def kl_k2(logps: Tensor, ref_logps: Tensor) -> Tensor:
    """(log r)^2 / 2, (B, T): biased, low variance, never negative; its gradient is that of the true KL
    (OpenRLHF's choice for REINFORCE++-baseline's KL loss)."""
    return 0.5 * (logps - ref_logps) ** 2


def kl_k3(logps: Tensor, ref_logps: Tensor) -> Tensor:
    """r' - 1 - log r' with r' = p_ref / p, (B, T): unbiased and never negative (GRPO's KL loss)."""
    log_ratio = logps - ref_logps
    return torch.expm1(-log_ratio) + log_ratio


KL_ESTIMATORS = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


def kl_penalty(logps: Tensor, ref_logps: Tensor, estimator: str = "k1") -> Tensor:
    """Per-token estimate of KL(policy || reference) by the named estimator of KL_ESTIMATORS. (B, T)."""
    check_choice(estimator, KL_ESTIMATORS, "KL estimator")
    return KL_ESTIMATORS[estimator](logps, ref_logps)


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Entropy of each position's next-token distribution: (B, T, V) -> (B, T)."""
    logps = logits.float().log_softmax(-1)
    return -(logps.exp() * logps).sum(-1)


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> float:
    """1 - Var[R - V] / Var[R] over masked tokens: 1 is a perfect value head, <= 0 a useless one."""
    residual_var = masked_mean((returns - values - masked_mean(returns - values, mask)) ** 2, mask)
    returns_var = masked_mean((returns - masked_mean(returns, mask)) ** 2, mask)
    return float(1.0 - residual_var / returns_var) if returns_var > 0 else float("nan")


# Loss aggregation: each mode is split into a partial sum per micro-batch and a normaliser over the
# whole minibatch, so that sum(partial_sum(micro-batch)) / normaliser(minibatch) is exactly the
# whole minibatch's loss however it is cut into micro-batches (rows are never split).

def token_sums(token_losses: Tensor, mask: Tensor, max_response_length: int | None = None) -> Tensor:
    """token_mean's partial: the sum over masked tokens. (B, T) -> ()."""
    return masked_sum(token_losses, mask)


def sequence_token_means(token_losses: Tensor, mask: Tensor, max_response_length: int | None = None) -> Tensor:
    """seq_mean_token_mean's partial: the sum over rows of each row's mean over its masked tokens.
    (B, T) -> (); a row without masked tokens adds 0."""
    return ((token_losses * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)).sum()


def sequence_token_sums_over_constant(token_losses: Tensor, mask: Tensor,
                                      max_response_length: int | None = None) -> Tensor:
    """seq_mean_token_sum_norm's partial: the sum over rows of each row's token sum divided by the
    same constant for every row (the longest allowed response), so no row's tokens weigh more for
    being short. (B, T) -> ()."""
    if not max_response_length or max_response_length < 1:
        raise ValueError("seq_mean_token_sum_norm divides by a constant: pass max_response_length "
                         "(the longest allowed response, e.g. max_new_tokens)")
    return masked_sum(token_losses, mask) / max_response_length


def sequence_count(mask: Tensor) -> Tensor:
    """Number of rows with at least one masked token, at least 1 (a divisor). (B, T) -> ()."""
    return (mask.sum(dim=1) > 0).sum().clamp(min=1)


@dataclass(frozen=True)
class LossAggregation:
    """How per-token losses become a minibatch's loss: loss = sum over its micro-batches of
    partial_sum(token_losses, mask, max_response_length) / normaliser(the minibatch's mask)."""

    partial_sum: Callable[..., Tensor]
    """(token_losses (B, T), mask (B, T), max_response_length) -> (): one micro-batch's share."""
    normaliser: Callable[[Tensor], Tensor]
    """The whole minibatch's mask (N, T) -> (): what the summed partials are divided by."""


LOSS_AGGREGATIONS = {
    # mean over all tokens of the minibatch: DAPO's token-level loss; verl token-mean
    "token_mean": LossAggregation(token_sums, token_count),
    # mean over rows of each row's token mean: the ReFT authors' train_rl_reft.py, for the policy and
    # the value loss alike (their token-mean lines are commented out); GRPO as DeepSeekMath wrote it;
    # verl seq-mean-token-mean
    "seq_mean_token_mean": LossAggregation(sequence_token_means, sequence_count),
    # mean over rows of each row's token sum / a constant: Dr. GRPO as its paper writes it and TRL's
    # loss_type="dr_grpo". verl's seq-mean-token-sum-norm divides by the constant but, in its releases
    # before loss_scale_factor, not by the number of rows: this one is that divided by the rows.
    "seq_mean_token_sum_norm": LossAggregation(sequence_token_sums_over_constant, sequence_count),
}


def aggregate(token_losses: Tensor, mask: Tensor, aggregation: str = "token_mean",
              max_response_length: int | None = None) -> Tensor:
    """The loss of one whole minibatch under the named aggregation. token_losses, mask: (B, T) -> ()."""
    mode = loss_aggregation(aggregation)
    return mode.partial_sum(token_losses, mask, max_response_length) / mode.normaliser(mask)


def loss_aggregation(name: str) -> LossAggregation:
    """LOSS_AGGREGATIONS[name], or an error naming the choices."""
    check_choice(name, LOSS_AGGREGATIONS, "loss aggregation")
    return LOSS_AGGREGATIONS[name]


IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")


def log_importance_ratio(logps: Tensor, old_logps: Tensor, mask: Tensor, level: str = "token") -> Tensor:
    """log(pi / pi_old) per token (B, T), or at the sequence level (GSPO, Zheng et al. 2025; TRL
    importance_sampling_level="sequence") the mean over each row's masked tokens, (B, 1), which
    broadcasts to every token of the row. logps, old_logps, mask: (B, T)."""
    check_choice(level, IMPORTANCE_SAMPLING_LEVELS, "importance_sampling")
    log_ratio = logps - old_logps
    if level == "token":
        return log_ratio
    return ((log_ratio * mask).sum(dim=1, keepdim=True) / mask.sum(dim=1, keepdim=True).clamp(min=1))


@dataclass(frozen=True)
class PolicyLossTerms:
    """One micro-batch's clipped policy loss and what the clipping did; every field a scalar tensor.
    The shares are over this micro-batch's masked tokens (weight them by its share of the tokens)."""

    loss_sum: Tensor
    """The aggregation's partial sum: divide by its normaliser over the whole minibatch."""
    clip_fraction: Tensor
    """Share of tokens where the clipped term was chosen (today's `clip_fraction`)."""
    clip_fraction_low: Tensor
    """Share of tokens with A < 0 whose ratio fell below 1 - clip_range."""
    clip_fraction_high: Tensor
    """Share of tokens with A > 0 whose ratio rose above 1 + clip_range_high."""
    dual_clip_fraction: Tensor
    """Share of tokens with A < 0 whose loss was capped at dual_clip * |A|."""


def check_dual_clip(dual_clip: float | None) -> None:
    """A cap of c * |A| bounds the loss of a negative-advantage token only where c > 1: at or below 1 it
    would cut into the losses plain clipping already allows."""
    if dual_clip is not None and dual_clip <= 1.0:
        raise ReftuneError(f"dual_clip must be > 1 (e.g. 3, verl's default), got {dual_clip}")


def policy_loss_terms(logps: Tensor, old_logps: Tensor, advantages: Tensor, mask: Tensor, *,
                      clip_range: float, clip_range_high: float | None = None, dual_clip: float | None = None,
                      importance_sampling: str = "token", aggregation: str = "token_mean",
                      max_response_length: int | None = None) -> PolicyLossTerms:
    """PPO's clipped surrogate per token, max(-A * ratio, -A * clip(ratio, 1 - eps_low, 1 + eps_high)),
    then aggregated. logps, old_logps, advantages, mask: (B, T).

    clip_range_high: the upper bound's eps (DAPO's clip-higher; verl clip_ratio_high, TRL
    epsilon_high); None: clip_range. It binds only for A > 0: for A < 0 the max picks the unclipped term.
    dual_clip: c > 1 caps the loss of A < 0 tokens at c * |A|, so a token the policy has made far
    likelier than when sampled cannot push an unbounded update (Ye et al. 2020; verl clip_ratio_c,
    OpenRLHF dual_clip). None: no cap.
    importance_sampling: token (PPO) or sequence (GSPO); see log_importance_ratio. The sequence ratio
    is meant for one advantage per row (the group estimators): with GAE's per-token advantages each
    token's loss would weigh its own advantage by its row's ratio, so RLConfig refuses that pairing.
    aggregation, max_response_length: a LOSS_AGGREGATIONS name and its constant.
    """
    check_dual_clip(dual_clip)
    upper = clip_range if clip_range_high is None else clip_range_high
    ratio = torch.exp(log_importance_ratio(logps, old_logps, mask, importance_sampling))
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_range, 1.0 + upper)
    token_losses = torch.maximum(unclipped, clipped)
    negative = advantages < 0
    dual_capped = torch.zeros_like(negative)
    if dual_clip is not None:
        cap = -advantages * dual_clip
        dual_capped = negative & (token_losses > cap)
        token_losses = torch.where(dual_capped, cap, token_losses)
    mode = loss_aggregation(aggregation)
    return PolicyLossTerms(
        loss_sum=mode.partial_sum(token_losses, mask, max_response_length),
        clip_fraction=masked_mean((clipped > unclipped).float(), mask),
        clip_fraction_low=masked_mean((negative & (ratio < 1.0 - clip_range)).float(), mask),
        clip_fraction_high=masked_mean(((advantages > 0) & (ratio > 1.0 + upper)).float(), mask),
        dual_clip_fraction=masked_mean(dual_capped.float(), mask))
