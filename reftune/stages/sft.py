"""Warm-up SFT (and the SFT baseline): next-token loss on the gold CoT, the prompt masked out. With an
OfflineSTConfig this is the paper's Offline-ST: the same training on the gold CoTs plus the correct
CoTs a warm-up model sampled for the training questions.

Departures from the authors' scripts: the best checkpoint is chosen by greedy accuracy on a dev
split, never on test; examples longer than max_length are skipped and counted instead of truncated
(a truncated CoT teaches an answer-less ending); the last partial batch of an epoch is dropped so
every step has the same size on every process.
"""
from __future__ import annotations

import time

import torch

from reftune.config import OfflineSTConfig, SFTConfig
from reftune.errors import ReftuneError
from reftune.model.loading import save_pretrained
from reftune.training.batches import (encode_pairs, nll_backward, plan_steps, tokenizer_texts, training_pairs,
                                    verified_examples, warmup_decay_scheduler)
from reftune.training.data import epoch_slice, load_examples, shard, use_prompt_format
from reftune.training.preparation import adamw, load_model
from reftune.training.run import Run
from reftune.training.samples import SAMPLES_FILE, greedy_accuracy, self_training_pairs, training_samples
from reftune.training.sharding import as_number
from reftune.training.summaries import SFTSummary


def sft(config: SFTConfig) -> SFTSummary:
    """Train, evaluating and checkpointing each epoch (or every eval_every steps). Returns a summary."""
    # 1. the run folder, the data (Offline-ST: the gold CoTs and the sampler's correct ones)
    offline_st = isinstance(config, OfflineSTConfig)
    run = Run(config, "offline-st" if offline_st else "sft", SFTConfig)
    accelerator, main = run.accelerator, run.main
    task, train = load_examples(config, config.train_split, config.max_train_examples)
    _, dev = load_examples(config, config.dev_split, config.eval_limit)
    use_prompt_format(task, config, train, run.model_to_resume)
    if config.check_cots:
        train, dropped = verified_examples(task, train)
        if main:
            print(f"reftune {run.stage}: --check-cots kept {len(train)} training examples, dropped "
                  f"{sum(dropped.values())} ({', '.join(f'{n} {why}' for why, n in dropped.items()) or 'none'})", flush=True)
        if not train:
            raise ReftuneError("--check-cots dropped every training example: run `reftune check` on the data")
    pairs, data = training_pairs(task, train), {}
    if offline_st:
        results = training_samples(accelerator, config, task, train, run.folder / SAMPLES_FILE, config.samples,
                                   config.num_samples)
        pairs, data = self_training_pairs(task, results, config.keep_per_question)
        if main:
            print(f"reftune offline-st: {data['sampled_cots_kept']} sampled CoTs kept for "
                  f"{data['questions_with_a_kept_sample']} of {data['questions']} questions (samples right: "
                  f"{data['sample_accuracy']:.1%}), plus {data['gold_cots']} gold CoTs", flush=True)

    # 2. the model (from the checkpoint when resuming: its tokenizer is the one trained with)
    policy = load_model(config, accelerator.device, tokenizer_texts(pairs, [task.prompt(e) for e in dev]),
                        name=run.model_to_resume)
    model, tokenizer = policy.model, policy.tokenizer
    encoded, skipped = encode_pairs(tokenizer, pairs, config.max_length)
    if not encoded:
        raise ReftuneError(f"all {len(pairs)} training examples are longer than max_length="
                           f"{config.max_length} tokens: raise --max-length")
    if skipped and main:
        print(f"reftune {run.stage}: {skipped} of {len(pairs)} training examples are longer than max_length="
              f"{config.max_length} tokens and were skipped; raise --max-length to keep them", flush=True)
    steps_per_epoch, total_steps = plan_steps(config, len(encoded), accelerator.num_processes)

    # 3. optimizer and schedule, resumed when asked
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = adamw(trainable, config.learning_rate, config.weight_decay)
    scheduler = warmup_decay_scheduler(optimizer, total_steps, config.warmup_ratio)
    model, optimizer = run.prepare(model, optimizer, scheduler)
    trainable = [p for p in model.parameters() if p.requires_grad]  # the prepared ones: FSDP makes new ones
    run.begin(total_steps, finite=("loss", "grad_norm"))
    unwrapped = accelerator.unwrap_model(model)
    evaluate = lambda: greedy_accuracy(accelerator, task, unwrapped, tokenizer, dev,  # noqa: E731
                                       config.eval_max_new_tokens, config.dev_batch_size)
    export = lambda path, weights=None: save_pretrained(unwrapped, tokenizer, path, weights)  # noqa: E731

    # 4. train
    model.train()
    for step in range(run.state.step, total_steps):
        step_started = time.perf_counter()
        epoch, batch = epoch_slice(encoded, config.seed, step, steps_per_epoch, config.batch_size)
        # Sum of NLL over the step's target tokens / their number, whatever the split into micro-batches
        # and processes (DDP averages gradients over processes, hence the factor).
        step_tokens = sum(e.num_target_tokens for e in batch)
        [loss_sum] = nll_backward(accelerator, model, [(shard(batch, accelerator), accelerator.num_processes / step_tokens)],
                                  config.micro_batch_size, tokenizer.pad_token_id)
        grad_norm = as_number(accelerator.clip_grad_norm_(trainable, config.max_grad_norm))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss_sum = accelerator.reduce(torch.tensor(loss_sum, device=accelerator.device), reduction="sum")
        loss = loss_sum.item() / step_tokens
        run.step_done({"loss": loss, "lr": scheduler.get_last_lr()[0], "grad_norm": grad_norm, "epoch": epoch,
                       "target_tokens_per_s": step_tokens / (time.perf_counter() - step_started)}, loss=f"{loss:.3f}")

        # 5. evaluate on dev, checkpoint, keep the best
        if run.due(config.eval_every or steps_per_epoch):
            run.checkpoint(evaluate, export, epoch)
            model.train()
        if run.stopping:
            break

    # 6. summary
    return run.finish(SFTSummary, train_examples=len(encoded), skipped_too_long=skipped, data=data)
