"""The steps of one RL step that are not the loop itself: the forward passes over a rollout and the
clipped PPO updates. An update reads as three parts: the loss of one micro-batch (micro_batch_loss),
what the critic's warm-up takes across processes (critic_warmup_policy_term, drop_policy_gradients),
and the figures it reports (UpdateFigures). Shapes: N rows (this process), L = prompt + response tokens."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from reftune.algorithms.losses import (LOSS_AGGREGATIONS, PolicyLossTerms, chosen_logps, entropy_from_logits,
                                       kl_penalty, masked_mean, policy_loss_terms, token_count, value_token_losses)
from reftune.model.loading import checkpointing_in_eval_mode
from reftune.model.response_forward import response_forward, shareable_group_size
from reftune.training.batches import accumulating
from reftune.training.sharding import as_number


@dataclass(frozen=True)
class Experience:
    """A scored rollout with everything the updates need; all (N, L) unless noted."""

    sequences: Tensor
    attention_mask: Tensor
    response_mask: Tensor
    old_logps: Tensor
    ref_logps: Tensor
    values: Tensor
    advantages: Tensor
    returns: Tensor
    prompt_length: int   # P: the responses start at column P
    group_size: int = 1  # rows come in groups of this many samples of one prompt
    loss_mask: Tensor | None = None  # the tokens the losses count (mask_truncated drops cut rows); None: response_mask


def micro_batches(attention_mask: Tensor, size: int, prompt_length: int) -> list[tuple[slice, slice, int]]:
    """(rows, columns, response start within those columns) of each micro-batch of `size` rows.
    The columns skip left padding of the longest prompt and right padding of the longest response
    where no row of the micro-batch reaches them: the same result for less compute."""
    chunks = []
    for start in range(0, len(attention_mask), size):
        rows = slice(start, min(start + size, len(attention_mask)))
        used = attention_mask[rows].any(dim=0).nonzero()
        first, last = int(used[0]), int(used[-1])
        chunks.append((rows, slice(first, last + 1), prompt_length - first))
    return chunks


@torch.no_grad()
def reference_forward(reference, sequences: Tensor, attention_mask: Tensor, prompt_length: int,
                      micro_batch_size: int, group_size: int = 1, temperature: float = 1.0) -> Tensor:
    """Token log-probs under the reference policy (a causal LM) at the sampling temperature: (N, L),
    0 on the prompt columns."""
    logps = torch.zeros(sequences.shape, device=sequences.device)
    share = shareable_group_size(micro_batch_size, group_size)
    for rows, columns, start in micro_batches(attention_mask, micro_batch_size, prompt_length):
        logits, _ = response_forward(reference, sequences[rows, columns], attention_mask[rows, columns], start, share)
        response = slice(prompt_length, columns.stop)
        logps[rows, response] = chosen_logps(logits / temperature, sequences[rows, response])
    return logps


def ppo_update(accelerator, model, optimizer, trainable, experience: Experience, config,
               use_values: bool, critic_only: bool = False) -> dict:
    """`config.ppo_epochs` clipped updates, each over all of this process's rows (one minibatch, as
    in the paper), in micro-batches whose partial losses add up to the whole minibatch's loss under
    config.loss_aggregation. A step whose loss or gradient is not finite is skipped and reported.

    critic_only (the critic's warm-up): the value head alone learns, from the backbone's detached
    hidden states (see critic_warmup_policy_term and drop_policy_gradients for what that takes under
    DDP). Returns the update's figures (UpdateFigures)."""
    plan = LossPlan.of(experience, config)
    chunks = micro_batches(experience.attention_mask, config.micro_batch_size, experience.prompt_length)
    figures = UpdateFigures(config.ppo_epochs)
    # with --gradient-checkpointing, also where the policy is in eval mode (as a saved model loads)
    with checkpointing_in_eval_mode(model):
        for epoch in range(config.ppo_epochs):
            finite = torch.ones((), device=accelerator.device)
            for chunk in accumulating(accelerator, model, chunks):
                part = micro_batch_loss(model, experience, chunk, plan, config, use_values, critic_only)
                loss = part.total(config, critic_only, accelerator.num_processes)
                finite *= torch.isfinite(loss.detach()).float()
                accelerator.backward(loss)
                figures.add_micro_batch(part, epoch)
            grad_norm = as_number(accelerator.clip_grad_norm_(trainable, config.max_grad_norm))
            all_finite = float(accelerator.reduce(finite, reduction="sum")) == accelerator.num_processes
            if critic_only:
                drop_policy_gradients(accelerator.unwrap_model(model), trainable)
            applied = all_finite and math.isfinite(grad_norm)
            if applied:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            figures.add_optimizer_step(grad_norm, applied)
    return figures.totals


# ---- the loss of one micro-batch ----------------------------------------------------------------
@dataclass(frozen=True)
class LossPlan:
    """What every micro-batch's loss is divided by, from the whole minibatch: the partial losses of the
    micro-batches then add up to the minibatch's loss however it is cut."""

    loss_mask: Tensor         # (N, L) the tokens the losses count
    normaliser: Tensor        # () config.loss_aggregation's, over the minibatch
    value_normaliser: Tensor  # () config.value_loss_aggregation's
    num_tokens: Tensor        # () tokens the losses count: each micro-batch's figures weigh by its share
    group_size: int           # rows whose prompt one forward pass may share

    @classmethod
    def of(cls, experience: Experience, config) -> LossPlan:
        P = experience.prompt_length
        loss_mask = experience.response_mask if experience.loss_mask is None else experience.loss_mask
        return cls(loss_mask, LOSS_AGGREGATIONS[config.loss_aggregation].normaliser(loss_mask[:, P:]),
                   LOSS_AGGREGATIONS[config.value_loss_aggregation].normaliser(loss_mask[:, P:]),
                   token_count(loss_mask), shareable_group_size(config.micro_batch_size, experience.group_size))


@dataclass(frozen=True)
class MicroBatchLoss:
    """One micro-batch's share of the minibatch's losses, and what its figures are read from."""

    policy: Tensor          # () the clipped policy loss's share
    value: Tensor | None    # () the value loss's share; None without a value head
    kl: Tensor | None       # () the KL loss's share; None unless config.kl_in is "loss"
    terms: PolicyLossTerms  # what the clipping did
    logits: Tensor          # (rows, T, V) at the sampling temperature
    mask: Tensor            # (rows, T) the tokens the losses count
    weight: float           # the micro-batch's share of the minibatch's tokens

    def total(self, config, critic_only: bool, num_processes: int) -> Tensor:
        """The loss to backpropagate: the policy's (while the critic warms up, the term that stands in
        for it), plus vf_coef x the value loss (aggregated by its own mode), plus kl_coef x the KL loss
        (a policy term: not while the critic warms up)."""
        loss = critic_warmup_policy_term(self.policy, num_processes) if critic_only else self.policy
        if self.value is not None:
            loss = loss + config.vf_coef * self.value
        if self.kl is not None and not critic_only:
            loss = loss + config.kl_coef * self.kl
        return loss


def micro_batch_loss(model, experience: Experience, chunk: tuple[slice, slice, int], plan: LossPlan, config,
                     use_values: bool, critic_only: bool) -> MicroBatchLoss:
    """The paper's losses on one micro-batch (rows, columns, response start: see micro_batches)."""
    rows, cols, start = chunk
    response = (rows, slice(experience.prompt_length, cols.stop))  # what the losses look at
    mask = plan.loss_mask[response]
    weight = float(mask.sum() / plan.num_tokens)
    logits, values = model(experience.sequences[rows, cols], experience.attention_mask[rows, cols], start,
                           plan.group_size, values_only=critic_only)
    # the policy the samples came from: its logits at the sampling temperature (as verl's actor divides
    # them), so the first epoch's ratio is 1 and the KL compares like with like
    logits = logits / config.temperature
    logps = chosen_logps(logits, experience.sequences[response])
    terms = policy_loss_terms(logps, experience.old_logps[response], experience.advantages[response], mask,
                              clip_range=config.clip_range, clip_range_high=config.clip_range_high,
                              dual_clip=config.dual_clip, importance_sampling=config.importance_sampling,
                              aggregation=config.loss_aggregation, max_response_length=config.max_new_tokens)
    value = kl = None
    if use_values:
        value_tokens = value_token_losses(values.float(), experience.values[response], experience.returns[response],
                                          config.value_clip_range)
        value = (LOSS_AGGREGATIONS[config.value_loss_aggregation].partial_sum(value_tokens, mask, config.max_new_tokens)
                 / plan.value_normaliser)
    if config.kl_in == "loss":
        kl_tokens = kl_penalty(logps, experience.ref_logps[response], config.kl_estimator)
        kl = LOSS_AGGREGATIONS[config.loss_aggregation].partial_sum(kl_tokens, mask, config.max_new_tokens) / plan.normaliser
    return MicroBatchLoss(terms.loss_sum / plan.normaliser, value, kl, terms, logits, mask, weight)


# ---- the critic's warm-up across processes ------------------------------------------------------
def critic_warmup_policy_term(policy_loss: Tensor, num_processes: int) -> Tensor:
    """The policy's loss while only the critic learns: nothing reaches the backbone, yet DDP waits for a
    gradient of every weight, so across processes the policy's loss counts with weight 0 (which gives
    each weight a gradient of zeros); one process runs no backward pass through the backbone at all."""
    return policy_loss * 0.0 if num_processes > 1 else torch.zeros((), device=policy_loss.device)


def drop_policy_gradients(model, trainable) -> None:
    """Every trainable weight but the value head's loses its gradient: the optimizer skips it, so AdamW
    neither decays nor counts a step for the weights that wait while the critic warms up."""
    head = {id(p) for p in model.value_head.parameters()}
    for parameter in trainable:
        if id(parameter) not in head:
            parameter.grad = None


# ---- the update's figures ----------------------------------------------------------------------
CLIP_FIGURES = ("clip_fraction", "clip_fraction_low", "clip_fraction_high", "dual_clip_fraction")


class UpdateFigures:
    """The figures of one update: losses and clip shares averaged over its ppo_epochs (the clip shares and
    the entropy weighted by each micro-batch's tokens), the gradient norm, and the steps skipped."""

    def __init__(self, ppo_epochs: int):
        self.totals = dict.fromkeys(("policy_loss", "value_loss", *CLIP_FIGURES, "entropy", "kl_loss", "grad_norm"), 0.0)
        self.totals["skipped_updates"] = 0
        self.per_epoch = 1.0 / ppo_epochs

    def add_micro_batch(self, part: MicroBatchLoss, epoch: int) -> None:
        totals, per_epoch = self.totals, self.per_epoch
        if part.value is not None:
            totals["value_loss"] += float(part.value.detach()) * per_epoch
        if part.kl is not None:
            totals["kl_loss"] += float(part.kl.detach()) * per_epoch
        if epoch == 0:
            totals["entropy"] += float(masked_mean(entropy_from_logits(part.logits.detach()), part.mask)) * part.weight
        totals["policy_loss"] += float(part.policy.detach()) * per_epoch
        for name in CLIP_FIGURES:
            totals[name] += float(getattr(part.terms, name)) * part.weight * per_epoch

    def add_optimizer_step(self, grad_norm: float, applied: bool) -> None:
        if not applied:
            self.totals["skipped_updates"] += 1
        self.totals["grad_norm"] += grad_norm * self.per_epoch
