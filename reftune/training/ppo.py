"""The steps of one RL step that are not the loop itself: the forward passes over a rollout and the
clipped PPO updates. Shapes: N rows (this process), L = prompt + response tokens."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from reftune.algorithms.losses import (LOSS_AGGREGATIONS, chosen_logps, entropy_from_logits, kl_penalty, masked_mean,
                                       policy_loss_terms, token_count, value_token_losses)
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
    hidden states, so one process runs no backward pass through the backbone. Across processes the
    policy's loss is counted with weight 0, which gives every other weight the gradient (of zeros) DDP
    waits for. Either way those weights' gradients are dropped before the optimizer's step, so AdamW
    neither decays nor counts a step for them."""
    totals = dict.fromkeys(("policy_loss", "value_loss", "clip_fraction", "clip_fraction_low", "clip_fraction_high",
                            "dual_clip_fraction", "entropy", "kl_loss", "grad_norm"), 0.0)
    totals["skipped_updates"] = 0
    P = experience.prompt_length
    loss_mask = experience.response_mask if experience.loss_mask is None else experience.loss_mask
    aggregation = LOSS_AGGREGATIONS[config.loss_aggregation]
    normaliser = aggregation.normaliser(loss_mask[:, P:])
    value_aggregation = LOSS_AGGREGATIONS[config.value_loss_aggregation]
    value_normaliser = value_aggregation.normaliser(loss_mask[:, P:])
    num_tokens = token_count(loss_mask)
    chunks = micro_batches(experience.attention_mask, config.micro_batch_size, P)
    share = shareable_group_size(config.micro_batch_size, experience.group_size)
    per_epoch = 1.0 / config.ppo_epochs
    # with --gradient-checkpointing, also where the policy is in eval mode (as a saved model loads)
    with checkpointing_in_eval_mode(model):
        for epoch in range(config.ppo_epochs):
            finite = torch.ones((), device=accelerator.device)
            for rows, cols, start in accumulating(accelerator, model, chunks):
                response = (rows, slice(P, cols.stop))  # what the losses look at
                mask = loss_mask[response]
                weight = float(mask.sum() / num_tokens)  # this micro-batch's share of the minibatch's tokens
                logits, values = model(experience.sequences[rows, cols], experience.attention_mask[rows, cols],
                                       start, share, values_only=critic_only)
                # the policy the samples came from: its logits at the sampling temperature (as verl's
                # actor divides them), so the first epoch's ratio is 1 and the KL compares like with like
                logits = logits / config.temperature
                logps = chosen_logps(logits, experience.sequences[response])
                terms = policy_loss_terms(logps, experience.old_logps[response], experience.advantages[response], mask,
                                          clip_range=config.clip_range, clip_range_high=config.clip_range_high,
                                          dual_clip=config.dual_clip, importance_sampling=config.importance_sampling,
                                          aggregation=config.loss_aggregation, max_response_length=config.max_new_tokens)
                loss = terms.loss_sum / normaliser
                if critic_only:  # nothing reaches the backbone, but DDP must see a gradient for it
                    loss = loss * 0.0 if accelerator.num_processes > 1 else torch.zeros((), device=loss.device)
                if use_values:  # aggregated over the whole minibatch like the policy loss, by its own mode
                    vf_tokens = value_token_losses(values.float(), experience.values[response],
                                                   experience.returns[response], config.value_clip_range)
                    vf_loss = value_aggregation.partial_sum(vf_tokens, mask, config.max_new_tokens) / value_normaliser
                    loss = loss + config.vf_coef * vf_loss
                    totals["value_loss"] += float(vf_loss.detach()) * per_epoch
                if config.kl_in == "loss":
                    kl = kl_penalty(logps, experience.ref_logps[response], config.kl_estimator)
                    kl_loss = aggregation.partial_sum(kl, mask, config.max_new_tokens) / normaliser
                    if not critic_only:  # a policy term: the warm-up's policy does not learn
                        loss = loss + config.kl_coef * kl_loss
                    totals["kl_loss"] += float(kl_loss.detach()) * per_epoch
                finite *= torch.isfinite(loss.detach()).float()
                accelerator.backward(loss)
                if epoch == 0:
                    totals["entropy"] += float(masked_mean(entropy_from_logits(logits.detach()), mask)) * weight
                totals["policy_loss"] += float(terms.loss_sum.detach() / normaliser) * per_epoch
                for name in ("clip_fraction", "clip_fraction_low", "clip_fraction_high", "dual_clip_fraction"):
                    totals[name] += float(getattr(terms, name)) * weight * per_epoch
            grad_norm = as_number(accelerator.clip_grad_norm_(trainable, config.max_grad_norm))
            all_finite = float(accelerator.reduce(finite, reduction="sum")) == accelerator.num_processes
            if critic_only:
                drop_policy_gradients(accelerator.unwrap_model(model), trainable)
            if all_finite and math.isfinite(grad_norm):
                optimizer.step()
            else:
                totals["skipped_updates"] += 1
            optimizer.zero_grad(set_to_none=True)
            totals["grad_norm"] += grad_norm * per_epoch
    return totals


def drop_policy_gradients(model, trainable) -> None:
    """Every trainable weight but the value head's loses its gradient: the optimizer skips it."""
    head = {id(p) for p in model.value_head.parameters()}
    for parameter in trainable:
        if id(parameter) not in head:
            parameter.grad = None
