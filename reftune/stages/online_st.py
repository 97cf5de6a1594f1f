"""Online self-training (the paper's Online-ST baseline): like ReFT it samples from the policy as it
trains, but it learns only from the samples that are right, by maximum likelihood.

Each step:
1. sample num_samples_per_question CoTs per question from the current policy;
2. score them; keep the correct, finished ones;
3. loss = w * NLL(correct samples) + (1 - w) * NLL(gold CoTs of the batch), each NLL a mean over its
   tokens on all processes (the paper: w = 0.5); no reference model, no KL;
4. one clipped AdamW step;
5. log, evaluate on dev, checkpoint.
"""
from __future__ import annotations

import time

import torch

from reftune.config import OnlineSTConfig
from reftune.generation.rollout import SamplingParams, sample
from reftune.model.loading import save_pretrained
from reftune.scoring.rewards import CORRECT_REWARD, score_answer
from reftune.training.batches import encode_pairs, nll_backward, tokenizer_texts, training_pairs
from reftune.training.data import epoch_slice, load_examples, plan_on_policy, shard, use_prompt_format
from reftune.training.preparation import adamw, load_model
from reftune.training.run import Run
from reftune.training.samples import greedy_accuracy
from reftune.training.summaries import OnlineSTSummary


def online_st(config: OnlineSTConfig) -> OnlineSTSummary:
    """Run Online-ST from the warm-up model; returns a summary."""
    run = Run(config, "online-st", OnlineSTConfig, seed_per_process=True)  # each process samples differently
    accelerator, processes = run.accelerator, run.accelerator.num_processes
    task, train = load_examples(config, config.train_split, config.max_train_examples)
    _, dev = load_examples(config, config.dev_split, config.eval_limit)
    use_prompt_format(task, config, train)
    steps_per_epoch, total_steps = plan_on_policy(config, len(train), processes)

    policy = load_model(config, accelerator.device,
                        tokenizer_texts(training_pairs(task, train), [task.prompt(e) for e in dev]))
    tokenizer = policy.tokenizer
    trainable = [p for p in policy.model.parameters() if p.requires_grad]
    optimizer = adamw(trainable, config.learning_rate, config.weight_decay)
    model, optimizer = run.prepare(policy.model, optimizer)  # and, resuming, weights, optimizer, RNG
    unwrapped = accelerator.unwrap_model(model)
    run.begin(total_steps, finite=("gold_nll", "grad_norm"))
    params = SamplingParams.of(config, config.num_samples_per_question)
    evaluate = lambda: greedy_accuracy(accelerator, task, unwrapped, tokenizer, dev,  # noqa: E731
                                       config.eval_max_new_tokens, config.dev_batch_size)
    export = lambda path: save_pretrained(unwrapped, tokenizer, path)  # noqa: E731

    for step in range(run.state.step, total_steps):
        step_started = time.perf_counter()
        epoch, questions = epoch_slice(train, config.seed, step, steps_per_epoch, config.questions_per_step)
        mine = shard(questions, accelerator)

        # 1. sample from the current policy
        model.eval()
        rollout = sample(unwrapped, tokenizer, [task.prompt(q) for q in mine], params)
        # 2. keep the correct, finished samples
        answers = task.extract_answers(rollout.texts)
        k = params.num_samples
        scores = [score_answer(task, answer, mine[row // k].answer) for row, answer in enumerate(answers)]
        correct = [(task.prompt(mine[row // k]), rollout.texts[row]) for row, score in enumerate(scores)
                   if score == CORRECT_REWARD and rollout.finished[row]]
        samples, _ = encode_pairs(tokenizer, correct, config.max_length)
        golds, _ = encode_pairs(tokenizer, training_pairs(task, mine), config.max_length)
        # 3. w * NLL(correct samples) + (1 - w) * NLL(gold CoTs), token means over all processes
        counts = torch.tensor([sum(e.num_target_tokens for e in samples), sum(e.num_target_tokens for e in golds),
                               sum(scores), float(len(scores)), float(len(correct)), rollout.num_generated_tokens],
                              device=accelerator.device)
        sample_tokens, gold_tokens, reward_sum, rows, kept, generated = accelerator.reduce(counts, reduction="sum").tolist()
        parts = [(golds, (1 - config.sample_weight) * processes / max(gold_tokens, 1))]
        if sample_tokens:
            parts.insert(0, (samples, config.sample_weight * processes / sample_tokens))
        model.train()
        sums = nll_backward(accelerator, model, parts, config.micro_batch_size, tokenizer.pad_token_id)
        # 4. one clipped step
        grad_norm = accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        # 5. log, evaluate on dev, checkpoint
        gold_nll = accelerator.reduce(torch.tensor(sums[-1], device=accelerator.device), reduction="sum").item()
        run.step_done({"reward_mean": reward_sum / rows, "sample_accuracy": kept / rows, "correct_samples_trained": kept,
                       "gold_nll": gold_nll / max(gold_tokens, 1), "grad_norm": float(grad_norm), "epoch": epoch,
                       "completion_tokens_per_s": generated / (time.perf_counter() - step_started)},
                      reward=f"{reward_sum / rows:.3f}")
        if run.due(config.eval_every):
            run.checkpoint(evaluate, export, epoch)
        if run.stopping:
            break

    return run.finish(OnlineSTSummary)
