"""The reranking verifier (the paper's reward model): a correctness classifier initialised from an
SFT or ReFT checkpoint, trained on sampled CoTs labelled by the reward.

Departures from the paper: the best epoch is chosen by AUC on CoTs sampled for dev questions (the
paper does not say how it chose); samples are deduplicated per question, as in the paper, and the
balance of right and wrong samples is reported, since a verifier trained on 95% wrong samples can
score well by saying "wrong" to everything.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from reftune.config import VerifierConfig
from reftune.errors import ReftuneError
from reftune.model.heads import Verifier
from reftune.scoring.selection import roc_auc
from reftune.training.batches import accumulating, collate, encode_pairs, plan_steps, warmup_decay_scheduler
from reftune.training.data import epoch_slice, load_examples, shard, use_prompt_format
from reftune.training.preparation import adamw, load_model
from reftune.training.run import Run
from reftune.training.samples import SAMPLES_FILE, distinct, training_samples, verifier_scores
from reftune.training.summaries import VerifierSummary


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


def dev_auc(accelerator, verifier, tokenizer, samples: list[LabelledSample], batch_size: int) -> float:
    """AUC of the verifier on the dev samples, each process scoring its share."""
    from accelerate.utils import gather_object

    mine = shard(samples, accelerator)
    scores = verifier_scores(verifier, tokenizer, [(s.prompt, s.completion) for s in mine], batch_size)
    scored = gather_object([(score, sample.correct) for score, sample in zip(scores, mine)])
    return roc_auc([score for score, _ in scored], [label for _, label in scored])


def verifier(config: VerifierConfig) -> VerifierSummary:
    """Sample and label CoTs, train the classifier, keep the checkpoint with the best dev AUC."""
    # 1. the run folder and the questions
    run = Run(config, "verifier", VerifierConfig)
    accelerator, main = run.accelerator, run.main
    task, train = load_examples(config, config.train_split, config.max_train_examples)
    _, dev = load_examples(config, config.dev_split, config.eval_limit)
    use_prompt_format(task, config, train)

    # 2. sampled CoTs, deduplicated per question and labelled by the reward
    train_samples = labelled_samples(task, training_samples(
        accelerator, config, task, train, run.folder / SAMPLES_FILE, config.samples, config.num_samples))
    dev_samples = labelled_samples(task, training_samples(
        accelerator, config, task, dev, run.folder / "dev-samples.jsonl", config.dev_samples,
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
    scheduler = warmup_decay_scheduler(optimizer, total_steps, config.warmup_ratio)
    model, optimizer = run.prepare(model, optimizer, scheduler)
    unwrapped = accelerator.unwrap_model(model)
    run.begin(total_steps, metric="dev_auc", tracked={"balance": balance}, finite=("loss", "grad_norm"))

    def evaluate() -> float:
        model.eval()
        auc = dev_auc(accelerator, unwrapped, tokenizer, dev_samples, config.micro_batch_size * 2)
        model.train()
        return auc if auc == auc else 0.0  # NaN (one class among the scored) counts as no skill

    # 4. train: binary cross-entropy, mean over the step's samples on all processes
    model.train()
    for step in range(run.state.step, total_steps):
        epoch, batch = epoch_slice(encoded, config.seed, step, steps_per_epoch, config.batch_size)
        loss_sum, right = bce_backward(accelerator, model, shard(batch, accelerator), len(batch),
                                       config.micro_batch_size, tokenizer.pad_token_id)
        grad_norm = accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        run.step_done({"loss": loss_sum / len(batch), "train_accuracy": right / len(batch),
                       "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm), "epoch": epoch})

        # 5. dev AUC, checkpoint, keep the best
        if run.due(config.eval_every or steps_per_epoch):
            run.checkpoint(evaluate, lambda path: unwrapped.export(tokenizer, path), epoch)
        if run.stopping:
            break

    # 6. summary
    return run.finish(VerifierSummary, balance=balance, skipped_too_long=skipped)


def bce_backward(accelerator, model, mine: list, step_size: int, micro_batch_size: int, pad_id: int) -> tuple[float, float]:
    """Backpropagate the step's mean binary cross-entropy from this process's (example, label) pairs,
    in micro-batches; returns (summed loss, right predictions) over all processes."""
    chunks = [mine[start:start + micro_batch_size] for start in range(0, len(mine), micro_batch_size)]
    loss_sum, right = torch.zeros((), device=accelerator.device), torch.zeros((), device=accelerator.device)
    for chunk in accumulating(accelerator, model, chunks):
        inputs = collate([example for example, _ in chunk], pad_id, accelerator.device)
        labels = torch.tensor([label for _, label in chunk], device=accelerator.device)
        logits = model(inputs["input_ids"], inputs["attention_mask"])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="sum")
        accelerator.backward(loss * accelerator.num_processes / step_size)
        loss_sum += loss.detach()
        right += ((logits.detach() > 0).float() == labels).sum()
    loss_sum, right = accelerator.reduce(torch.stack([loss_sum, right]), reduction="sum").tolist()
    return loss_sum, right
