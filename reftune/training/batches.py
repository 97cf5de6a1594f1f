"""Supervised batches, shared by the stages that learn by likelihood (SFT, Offline-ST, Online-ST) and
the verifier: (prompt, target) pairs to token ids, padded batches, the schedule, and gradient
accumulation over micro-batches."""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator

import torch

from reftune.algorithms.losses import sft_loss_sum
from reftune.errors import ReftuneError
from reftune.model.response_forward import position_ids_from
from reftune.scoring.verification import verify_cots


@dataclass(frozen=True)
class EncodedExample:
    input_ids: list[int]  # prompt + target + EOS
    num_prompt_tokens: int

    @property
    def num_target_tokens(self) -> int:
        return len(self.input_ids) - self.num_prompt_tokens


def training_pairs(task, examples) -> list[tuple[str, str]]:
    """(prompt, SFT target) per example: the gold CoTs. Self-training adds sampled CoTs as pairs."""
    return [(task.prompt(example), task.target(example)) for example in examples]


def verified_examples(task, examples: list) -> tuple[list, dict[str, int]]:
    """The examples whose SFT target passes reftune.scoring.verification (final answer and stated steps), and
    how many of the others failed for each reason."""
    verdicts = verify_cots(task, [task.target(e) for e in examples], [e.answer for e in examples])
    dropped: dict[str, int] = {}
    for verdict in verdicts:
        if not verdict.ok:
            dropped[verdict.status] = dropped.get(verdict.status, 0) + 1
    return [e for e, verdict in zip(examples, verdicts) if verdict.ok], dropped


def example_texts(task, examples) -> list[str]:
    """Each example's prompt, followed by its SFT target where it has a gold CoT (RL needs only the
    questions and answers: its data may hold no CoT in the run's style)."""
    return [task.prompt(e) + (task.target(e) if e.cot else "") for e in examples]


def tokenizer_texts(pairs: list[tuple[str, str]], prompts: list[str]) -> list[str]:
    """What the `tiny` model's in-memory tokenizer is fitted to: the texts it will read and write."""
    return [prompt + target for prompt, target in pairs] + prompts


def encode_pairs(tokenizer, pairs: list[tuple[str, str]], max_length: int) -> tuple[list[EncodedExample], int]:
    """Token ids of prompt + target + EOS per pair; also how many were skipped as too long."""
    encoded, skipped = [], 0
    for prompt_text, target_text in pairs:
        prompt = tokenizer(prompt_text)["input_ids"]
        target = tokenizer(target_text, add_special_tokens=False)["input_ids"]
        ids = prompt + target + [tokenizer.eos_token_id]
        if len(ids) > max_length:
            skipped += 1
            continue
        encoded.append(EncodedExample(ids, len(prompt)))
    return encoded, skipped


def collate(batch: list[EncodedExample], pad_id: int, device) -> dict[str, torch.Tensor]:
    """Right-padded ids (B, T), attention mask (B, T) and target mask (B, T: 1 on target + EOS)."""
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention = torch.zeros(len(batch), width, dtype=torch.long)
    target = torch.zeros(len(batch), width)
    for row, example in enumerate(batch):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        attention[row, :n] = 1
        target[row, example.num_prompt_tokens:n] = 1
    return {"input_ids": ids.to(device), "attention_mask": attention.to(device), "target_mask": target.to(device)}


def linear_warmup_decay(step: int, total_steps: int, warmup_steps: int) -> float:
    """lr multiplier: rises linearly over warmup_steps, then falls linearly to 0 at total_steps.

    >>> [round(linear_warmup_decay(s, 10, 2), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.0]
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def warmup_decay_scheduler(optimizer, total_steps: int, warmup_ratio: float):
    """The paper's SFT schedule: linear warm-up over warmup_ratio of the steps, then linear decay."""
    warmup = math.ceil(warmup_ratio * total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: linear_warmup_decay(step, total_steps, warmup))


def plan_steps(config, num_examples: int, num_processes: int) -> tuple[int, int]:
    """(steps per epoch, total steps), or a clear error when a step cannot be split evenly into
    micro-batches over the processes."""
    per_pass = config.micro_batch_size * num_processes
    if config.batch_size % per_pass:
        raise ReftuneError(f"batch_size {config.batch_size} must be a multiple of micro_batch_size "
                           f"{config.micro_batch_size} x {num_processes} processes")
    if num_examples < config.batch_size:
        raise ReftuneError(f"batch_size {config.batch_size} is larger than the training set "
                           f"({num_examples} usable examples): lower --batch-size")
    steps_per_epoch = num_examples // config.batch_size
    total = steps_per_epoch * config.epochs
    return steps_per_epoch, min(total, config.max_steps or total)


def accumulating(accelerator, model, chunks: list) -> Iterator:
    """Yield each micro-batch of a step; all but the last are inside no_sync, so gradients are
    all-reduced across processes once per step, not once per micro-batch."""
    for index, chunk in enumerate(chunks):
        last = index == len(chunks) - 1
        with contextlib.nullcontext() if last else accelerator.no_sync(model):
            yield chunk


def nll_backward(accelerator, model, parts: list[tuple[list[EncodedExample], float]], micro_batch_size: int,
                 pad_id: int) -> list[float]:
    """Backpropagate sum over parts of scale * (summed target NLL of the part's examples), in
    micro-batches of this process's examples. Returns each part's summed NLL."""
    chunks = [(index, examples[start:start + micro_batch_size])
              for index, (examples, _) in enumerate(parts) for start in range(0, len(examples), micro_batch_size)]
    sums = [0.0] * len(parts)
    for index, examples in accumulating(accelerator, model, chunks):
        micro = collate(examples, pad_id, accelerator.device)
        logits = model(input_ids=micro["input_ids"], attention_mask=micro["attention_mask"],
                       position_ids=position_ids_from(micro["attention_mask"]), use_cache=False).logits
        loss = sft_loss_sum(logits, micro["input_ids"], micro["target_mask"])
        accelerator.backward(loss * parts[index][1])
        sums[index] += float(loss.detach())
    return sums
