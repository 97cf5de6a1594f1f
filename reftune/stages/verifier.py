"""The reranking verifier (the paper's reward model): a correctness classifier initialised from an
SFT or ReFT checkpoint, trained on sampled CoTs labelled by the reward.

Departures from the paper: the best epoch is chosen by AUC on CoTs sampled for dev questions (the
paper does not say how it chose); samples are deduplicated per question, as in the paper, and the
balance of right and wrong samples is reported, since a verifier trained on 95% wrong samples can
score well by saying "wrong" to everything.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import torch

from reftune.checkpoint import checkpoint_keeping_best, read_trainer_state
from reftune.config import VerifierConfig, sinks
from reftune.errors import ReftuneError
from reftune.models import Verifier, save_verifier
from reftune.selection import roc_auc
from reftune.stages.common import (adamw, as_dict, budget_spent, finish_run, load_examples, load_model, shard,
                                   start_run)
from reftune.stages.samples import SAMPLES_FILE, distinct, training_samples
from reftune.stages.sft import collate, encode_pairs, epoch_order, linear_warmup_decay, plan_steps
from reftune.tracking import Tracker, progress_bar


@dataclass(frozen=True)
class LabelledSample:
    prompt: str
    completion: str
    correct: bool


def labelled_samples(task, results) -> list[LabelledSample]:
    """Each question's distinct sampled CoTs, labelled right (reward 1.0) or wrong."""
    return [LabelledSample(task.prompt(result.example), result.completions[i], result.correct[i])
            for result in results for i in distinct(result.completions)]


def class_balance(samples: list[LabelledSample]) -> dict:
    right = sum(sample.correct for sample in samples)
    return {"samples": len(samples), "right": right, "wrong": len(samples) - right,
            "right_fraction": right / len(samples) if samples else 0.0}


def encode_labelled(tokenizer, samples: list[LabelledSample], max_length: int) -> tuple[list, int]:
    """(EncodedExample, label) per sample no longer than max_length; also how many were skipped."""
    encoded, skipped = [], 0
    for sample in samples:
        kept, too_long = encode_pairs(tokenizer, [(sample.prompt, sample.completion)], max_length)
        encoded += [(example, float(sample.correct)) for example in kept]
        skipped += too_long
    return encoded, skipped


@torch.no_grad()
def verifier_scores(verifier, tokenizer, pairs: list[tuple[str, str]], batch_size: int) -> list[float]:
    """P(correct) of each (prompt, completion)."""
    device = next(verifier.parameters()).device
    encoded, _ = encode_pairs(tokenizer, pairs, max_length=10**9)
    scores = []
    for start in range(0, len(encoded), batch_size):
        batch = collate(encoded[start:start + batch_size], tokenizer.pad_token_id, device)
        scores += torch.sigmoid(verifier(batch["input_ids"], batch["attention_mask"])).tolist()
    return scores


def dev_auc(accelerator, verifier, tokenizer, samples: list[LabelledSample], batch_size: int) -> float:
    """AUC of the verifier on the dev samples, each process scoring its share."""
    from accelerate.utils import gather_object

    mine = shard(samples, accelerator)
    scores = verifier_scores(verifier, tokenizer, [(s.prompt, s.completion) for s in mine], batch_size)
    scored = gather_object([(score, sample.correct) for score, sample in zip(scores, mine)])
    return roc_auc([score for score, _ in scored], [label for _, label in scored])


def verifier(config: VerifierConfig) -> dict:
    """Sample and label CoTs, train the classifier, keep the checkpoint with the best dev AUC."""
    # 1. the run folder and the questions
    accelerator, folder, resume_from = start_run(config, "verifier")
    main = accelerator.is_main_process
    task, train = load_examples(config, config.train_split, config.max_train_examples)
    _, dev = load_examples(config, config.dev_split, config.eval_limit)

    # 2. sampled CoTs, deduplicated per question and labelled by the reward
    train_samples = labelled_samples(task, training_samples(
        accelerator, config, task, train, folder / SAMPLES_FILE, config.samples, config.num_samples))
    dev_samples = labelled_samples(task, training_samples(
        accelerator, config, task, dev, folder / "dev-samples.jsonl", config.dev_samples,
        config.dev_samples_per_question))
    balance = {"train": class_balance(train_samples), "dev": class_balance(dev_samples)}
    if main:
        print(f"reftune verifier: train {balance['train']}, dev {balance['dev']}", flush=True)
    for split, counts in balance.items():
        if not counts["right"] or not counts["wrong"]:
            raise ReftuneError(f"the {split} samples are all {'wrong' if not counts['right'] else 'right'} "
                               f"({counts['samples']} distinct): a verifier needs both; sample more per question "
                               f"or from a model that is right some of the time")

    # 3. the classifier: a scalar head on the backbone of --model (restored from the checkpoint on resume)
    texts = [s.prompt + s.completion for s in train_samples + dev_samples]
    policy = load_model(config, accelerator.device, texts)
    tokenizer, model = policy.tokenizer, Verifier(policy.model)
    encoded, skipped = encode_labelled(tokenizer, train_samples, config.max_length)
    steps_per_epoch, total_steps = plan_steps(config, len(encoded), accelerator.num_processes)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = adamw(trainable, config.learning_rate, config.weight_decay)
    warmup = math.ceil(config.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: linear_warmup_decay(step, total_steps, warmup))
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    unwrapped = accelerator.unwrap_model(model)
    state = {"step": 0, "best_dev_accuracy": -1.0, "best_step": None}  # "accuracy" holds the dev AUC here
    if resume_from:
        accelerator.load_state(str(resume_from / "state"))
        state = read_trainer_state(resume_from)
    tracker = Tracker(folder, sinks(config.report_to), {**as_dict(config), "balance": balance}, enabled=main)
    bar = progress_bar(total_steps, "verifier", config.progress and main, initial=state["step"])
    started = time.perf_counter()

    # 4. train: binary cross-entropy, mean over the step's samples on all processes
    model.train()
    for step in range(state["step"], total_steps):
        epoch, position = divmod(step, steps_per_epoch)
        batch = [encoded[i] for i in epoch_order(len(encoded), config.seed, epoch)
                 [position * config.batch_size:(position + 1) * config.batch_size]]
        mine = shard(batch, accelerator)
        chunks = [mine[start:start + config.micro_batch_size] for start in range(0, len(mine), config.micro_batch_size)]
        loss_sum, right = torch.zeros((), device=accelerator.device), torch.zeros((), device=accelerator.device)
        for index, chunk in enumerate(chunks):
            inputs = collate([example for example, _ in chunk], tokenizer.pad_token_id, accelerator.device)
            labels = torch.tensor([label for _, label in chunk], device=accelerator.device)
            with contextlib.nullcontext() if index == len(chunks) - 1 else accelerator.no_sync(model):
                logits = model(inputs["input_ids"], inputs["attention_mask"])
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="sum")
                accelerator.backward(loss * accelerator.num_processes / len(batch))
            loss_sum += loss.detach()
            right += ((logits.detach() > 0).float() == labels).sum()
        grad_norm = accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] = step + 1
        loss_sum, right = accelerator.reduce(torch.stack([loss_sum, right]), reduction="sum").tolist()
        tracker.log({"loss": loss_sum / len(batch), "train_accuracy": right / len(batch), "lr": scheduler.get_last_lr()[0],
                     "grad_norm": float(grad_norm), "epoch": epoch}, state["step"])
        bar.update(1)

        # 5. dev AUC, checkpoint, keep the best
        every = config.eval_every or steps_per_epoch
        out_of_time = budget_spent(accelerator, started, config.max_seconds)
        if state["step"] % every == 0 or state["step"] == total_steps or out_of_time:
            model.eval()
            auc = dev_auc(accelerator, unwrapped, tokenizer, dev_samples, config.micro_batch_size * 2)
            model.train()
            tracker.log({"dev_auc": auc}, state["step"])
            state["epoch"] = epoch
            line = checkpoint_keeping_best(accelerator, folder, state, auc if auc == auc else 0.0,
                                           lambda path: save_verifier(unwrapped, tokenizer, path),
                                           config.keep_checkpoints, metric="dev AUC")
            if main:
                bar.write(f"step {state['step']}/{total_steps}: {line}")
        if out_of_time:
            break

    # 6. summary (best_dev_accuracy holds the AUC, under its own name too)
    return finish_run(folder, state, started, main, bar, tracker, best_dev_auc=state["best_dev_accuracy"],
                      balance=balance, skipped_too_long=skipped)
