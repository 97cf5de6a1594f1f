"""The steps of one RL step that are not the loop itself: the forward passes over a rollout and the
clipped PPO updates. Shapes: N rows (this process), L = prompt + response tokens."""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from reftune.algorithms.losses import (entropy_from_logits, kl_penalty, masked_mean, policy_loss,
                                       token_logps, value_loss)
from reftune.models import position_ids_from


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


def row_chunks(num_rows: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, num_rows)) for start in range(0, num_rows, size)]


def used_columns(attention_mask: Tensor) -> slice:
    """The columns where some row of a micro-batch has a real token: (n, L) -> a slice. Left padding
    of the longest prompt and right padding of the longest response, when no row of this
    micro-batch reaches them, are skipped: the same result for less compute."""
    used = attention_mask.any(dim=0).nonzero()
    return slice(int(used[0]), int(used[-1]) + 1)


@torch.no_grad()
def policy_forward(model, sequences: Tensor, attention_mask: Tensor, micro_batch_size: int
                   ) -> tuple[Tensor, Tensor]:
    """Token log-probs and values of the policy with its value head: (N, L) each, one pass."""
    logps = torch.zeros(sequences.shape, device=sequences.device)
    values = torch.zeros_like(logps)
    for rows in row_chunks(len(sequences), micro_batch_size):
        columns = used_columns(attention_mask[rows])
        logits, value = model(sequences[rows, columns], attention_mask[rows, columns])
        logps[rows, columns] = token_logps(logits, sequences[rows, columns])
        values[rows, columns] = value.float()
    return logps, values


@torch.no_grad()
def reference_forward(reference, sequences: Tensor, attention_mask: Tensor, micro_batch_size: int) -> Tensor:
    """Token log-probs under the reference policy (a causal LM): (N, L)."""
    logps = torch.zeros(sequences.shape, device=sequences.device)
    for rows in row_chunks(len(sequences), micro_batch_size):
        columns = used_columns(attention_mask[rows])
        mask = attention_mask[rows, columns]
        logits = reference(input_ids=sequences[rows, columns], attention_mask=mask,
                           position_ids=position_ids_from(mask)).logits
        logps[rows, columns] = token_logps(logits, sequences[rows, columns])
    return logps


def ppo_update(accelerator, model, optimizer, trainable, experience: Experience, config,
               use_values: bool) -> dict:
    """`config.ppo_epochs` clipped updates, each over all of this process's rows (one minibatch, as
    in the paper), in micro-batches whose losses are weighted to equal the whole minibatch's mean.
    A step whose loss or gradient is not finite is skipped and reported."""
    totals = {"policy_loss": 0.0, "value_loss": 0.0, "clip_fraction": 0.0, "entropy": 0.0,
              "kl_loss": 0.0, "grad_norm": 0.0, "skipped_updates": 0}
    num_tokens = experience.response_mask.sum().clamp(min=1)
    chunks = row_chunks(len(experience.sequences), config.micro_batch_size)
    for epoch in range(config.ppo_epochs):
        finite = torch.ones((), device=accelerator.device)
        for index, rows in enumerate(chunks):
            cols = used_columns(experience.attention_mask[rows])
            mask = experience.response_mask[rows, cols]
            weight = mask.sum() / num_tokens  # this micro-batch's share of the minibatch's tokens
            syncing = index == len(chunks) - 1
            with contextlib.nullcontext() if syncing else accelerator.no_sync(model):
                logits, values = model(experience.sequences[rows, cols], experience.attention_mask[rows, cols])
                logps = token_logps(logits, experience.sequences[rows, cols])
                pg_loss, clipped = policy_loss(logps, experience.old_logps[rows, cols],
                                               experience.advantages[rows, cols], mask, config.clip_range)
                loss = pg_loss
                if use_values:
                    vf_loss = value_loss(values.float(), experience.values[rows, cols], experience.returns[rows, cols],
                                         mask, config.value_clip_range)
                    loss = loss + config.vf_coef * vf_loss
                else:  # keep the unused value head in the graph: DDP insists every parameter is
                    vf_loss = values.sum() * 0.0
                    loss = loss + vf_loss
                if config.kl_in == "loss":
                    kl_loss = masked_mean(kl_penalty(logps, experience.ref_logps[rows, cols], config.kl_estimator), mask)
                    loss = loss + config.kl_coef * kl_loss
                    totals["kl_loss"] += float(kl_loss.detach()) * float(weight) / config.ppo_epochs
                finite *= torch.isfinite(loss.detach()).float()
                accelerator.backward(loss * weight)
            if epoch == 0:
                totals["entropy"] += float(masked_mean(entropy_from_logits(logits.detach()), mask) * weight)
            totals["policy_loss"] += float(pg_loss.detach()) * float(weight) / config.ppo_epochs
            totals["value_loss"] += float(vf_loss.detach()) * float(weight) / config.ppo_epochs
            totals["clip_fraction"] += float(clipped) * float(weight) / config.ppo_epochs
        grad_norm = float(accelerator.clip_grad_norm_(trainable, config.max_grad_norm))
        all_finite = float(accelerator.reduce(finite, reduction="sum")) == accelerator.num_processes
        if all_finite and math.isfinite(grad_norm):
            optimizer.step()
        else:
            totals["skipped_updates"] += 1
        optimizer.zero_grad(set_to_none=True)
        totals["grad_norm"] += grad_norm / config.ppo_epochs
    return totals
