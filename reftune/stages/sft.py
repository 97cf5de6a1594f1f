"""Warm-up SFT (and the SFT baseline): next-token loss on the gold CoT, the prompt masked out.

Departures from the authors' scripts: the best checkpoint is chosen by greedy accuracy on a dev
split, never on test; examples longer than max_length are skipped and counted instead of truncated
(a truncated CoT teaches an answer-less ending); the last partial batch of an epoch is dropped so
every step has the same size on every process.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import torch

from reftune.algorithms.losses import sft_loss_sum
from reftune.checkpoint import read_trainer_state
from reftune.config import SFTConfig, sinks
from reftune.errors import ReftuneError
from reftune.models import position_ids_from, save_pretrained
from reftune.stages.common import (adamw, as_dict, budget_spent, evaluate_and_checkpoint, finish_run, load_examples,
                                   load_model, shard, start_run)
from reftune.tracking import Tracker, progress_bar


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


def epoch_order(num_examples: int, seed: int, epoch: int) -> list[int]:
    """The shuffled order of one epoch: a pure function of (seed, epoch), so resume needs no state."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(num_examples, generator=generator).tolist()


def linear_warmup_decay(step: int, total_steps: int, warmup_steps: int) -> float:
    """lr multiplier: rises linearly over warmup_steps, then falls linearly to 0 at total_steps.

    >>> [round(linear_warmup_decay(s, 10, 2), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.0]
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def tokenizer_texts(pairs: list[tuple[str, str]], prompts: list[str]) -> list[str]:
    """What the `tiny` model's in-memory tokenizer is fitted to: the texts it will read and write."""
    return [prompt + target for prompt, target in pairs] + prompts


def nll_backward(accelerator, model, parts: list[tuple[list[EncodedExample], float]], micro_batch_size: int,
                 pad_id: int) -> list[float]:
    """Backpropagate sum over parts of scale * (summed target NLL of the part's examples), in
    micro-batches of this process's examples; gradients are synchronised across processes on the
    last micro-batch only. Returns each part's summed NLL."""
    chunks = [(index, examples[start:start + micro_batch_size])
              for index, (examples, _) in enumerate(parts) for start in range(0, len(examples), micro_batch_size)]
    sums = [0.0] * len(parts)
    for position, (index, examples) in enumerate(chunks):
        micro = collate(examples, pad_id, accelerator.device)
        syncing = position == len(chunks) - 1
        with contextlib.nullcontext() if syncing else accelerator.no_sync(model):
            logits = model(input_ids=micro["input_ids"], attention_mask=micro["attention_mask"],
                           position_ids=position_ids_from(micro["attention_mask"])).logits
            loss = sft_loss_sum(logits, micro["input_ids"], micro["target_mask"])
            accelerator.backward(loss * parts[index][1])
        sums[index] += float(loss.detach())
    return sums


def plan_steps(config: SFTConfig, num_examples: int, num_processes: int) -> tuple[int, int]:
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


def sft(config: SFTConfig, pairs: list[tuple[str, str]] | None = None, stage: str = "sft") -> dict:
    """Train, evaluating and checkpointing each epoch (or every eval_every steps). Returns a summary.
    pairs: (prompt, target) texts to train on instead of the gold CoTs of the train split (Offline-ST)."""
    # 1. the run folder, the data
    accelerator, folder, resume_from = start_run(config, stage)
    main = accelerator.is_main_process
    task, train = load_examples(config, config.train_split, config.max_train_examples)
    _, dev = load_examples(config, config.dev_split, config.eval_limit)
    pairs = pairs if pairs is not None else training_pairs(task, train)

    # 2. the model (from the checkpoint when resuming: its tokenizer is the one trained with)
    policy = load_model(config, accelerator.device, tokenizer_texts(pairs, [task.prompt(e) for e in dev]),
                        name=str(resume_from / "model") if resume_from else None)
    model, tokenizer = policy.model, policy.tokenizer
    encoded, skipped = encode_pairs(tokenizer, pairs, config.max_length)
    if not encoded:
        raise ReftuneError(f"all {len(pairs)} training examples are longer than max_length="
                           f"{config.max_length} tokens: raise --max-length")
    if skipped and main:
        print(f"reftune {stage}: {skipped} of {len(pairs)} training examples are longer than max_length="
              f"{config.max_length} tokens and were skipped; raise --max-length to keep them", flush=True)
    steps_per_epoch, total_steps = plan_steps(config, len(encoded), accelerator.num_processes)

    # 3. optimizer and schedule, resumed when asked
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = adamw(trainable, config.learning_rate, config.weight_decay)
    warmup = math.ceil(config.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: linear_warmup_decay(step, total_steps, warmup))
    # The scheduler stays out of prepare(): accelerate would step it once per process per step.
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    state = {"step": 0, "best_dev_accuracy": -1.0, "best_step": None}
    if resume_from:
        accelerator.load_state(str(resume_from / "state"))
        state = read_trainer_state(resume_from)
    tracker = Tracker(folder, sinks(config.report_to), as_dict(config), enabled=main)
    bar = progress_bar(total_steps, "sft", config.progress and main, initial=state["step"])
    started = time.perf_counter()

    # 4. train
    model.train()
    for step in range(state["step"], total_steps):
        step_started = time.perf_counter()
        epoch, position = divmod(step, steps_per_epoch)
        batch = [encoded[i] for i in epoch_order(len(encoded), config.seed, epoch)
                 [position * config.batch_size:(position + 1) * config.batch_size]]
        # Sum of NLL over the step's target tokens / their number, whatever the split into micro-batches
        # and processes (DDP averages gradients over processes, hence the factor).
        step_tokens = sum(e.num_target_tokens for e in batch)
        [loss_sum] = nll_backward(accelerator, model, [(shard(batch, accelerator), accelerator.num_processes / step_tokens)],
                                  config.micro_batch_size, tokenizer.pad_token_id)
        grad_norm = accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] = step + 1
        loss_sum = accelerator.reduce(torch.tensor(loss_sum, device=accelerator.device), reduction="sum")
        metrics = {"loss": loss_sum.item() / step_tokens,
                   "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm), "epoch": epoch,
                   "target_tokens_per_s": step_tokens / (time.perf_counter() - step_started)}
        tracker.log(metrics, state["step"])
        bar.update(1)
        bar.set_postfix(loss=f"{metrics['loss']:.3f}")

        # 5. evaluate on dev, checkpoint, keep the best
        every = config.eval_every or steps_per_epoch
        out_of_time = budget_spent(accelerator, started, config.max_seconds)
        if state["step"] % every == 0 or state["step"] == total_steps or out_of_time:
            unwrapped = accelerator.unwrap_model(model)
            evaluate_and_checkpoint(accelerator, config, task, unwrapped, tokenizer, dev, folder, state, epoch,
                                    lambda path: save_pretrained(unwrapped, tokenizer, path), tracker, bar, total_steps)
            model.train()
        if out_of_time:
            break

    # 6. summary
    return finish_run(folder, state, started, main, bar, tracker, train_examples=len(encoded), skipped_too_long=skipped)
