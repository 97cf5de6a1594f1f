"""ReFT's RL stage: PPO from the warm-up model with a value head on the shared backbone, the answer's
correctness as the terminal reward and a per-token KL penalty to the frozen warm-up model.

Departures from the authors' scripts: the best checkpoint is chosen on a dev split, never on test;
MCQ answers earn no partial reward; `advantage_estimator: group` offers the value-free GRPO-style
variant; `kl_in: loss` moves the KL from the reward into the loss (an option, not the paper's).
Old log-probs and values are read off the sampling passes themselves (the value head applied to
the hidden states decoding computes anyway), so the only extra pass is the reference's; with LoRA
the reference is the same weights with the adapters switched off.
"""
from __future__ import annotations

import copy
import time
from contextlib import contextmanager

import torch

from reftune.algorithms.advantages import ADVANTAGE_ESTIMATORS, token_rewards, whiten
from reftune.algorithms.losses import explained_variance, kl_penalty
from reftune.checkpoint import read_trainer_state
from reftune.config import RLConfig, sinks
from reftune.models import PolicyWithValueHead, is_lora, save_pretrained
from reftune.rewards import CORRECT_REWARD, score_answer
from reftune.rollout import SamplingParams, sample
from reftune.stages.common import (adamw, as_dict, budget_spent, evaluate_and_checkpoint, finish_run, load_examples,
                                   load_model, plan_on_policy, shard, start_run, step_questions)
from reftune.stages.ppo import Experience, ppo_update, reference_forward
from reftune.stages.sft import tokenizer_texts, training_pairs
from reftune.tracking import Tracker, progress_bar


@contextmanager
def timer(times: dict, name: str):
    started = time.perf_counter()
    yield
    times[f"time_{name}"] = times.get(f"time_{name}", 0.0) + time.perf_counter() - started


def reference_policy(policy):
    """The frozen warm-up model. With LoRA: the same module, adapters switched off per call."""
    if is_lora(policy):
        return None
    reference = copy.deepcopy(policy).eval()
    reference.requires_grad_(False)
    return reference


def export_model(model, tokenizer):
    """A HF folder of the policy (loadable by transformers) plus value_head.safetensors."""
    def export(path):
        from safetensors.torch import save_file

        save_pretrained(model.policy, tokenizer, path)
        save_file({k: v.contiguous() for k, v in model.value_head.state_dict().items()},
                  str(path / "value_head.safetensors"))
    return export


def rl(config: RLConfig) -> dict:
    """Run ReFT's RL stage; returns a summary. Every step is numbered as in the paper's algorithm."""
    accelerator, folder, resume_from = start_run(config, "rl", seed_per_process=True)  # each process samples differently
    main, processes = accelerator.is_main_process, accelerator.num_processes
    task, train = load_examples(config, config.train_split, config.max_train_examples)
    _, dev = load_examples(config, config.dev_split, config.eval_limit)
    steps_per_epoch, total_steps = plan_on_policy(config, len(train), processes)

    # The warm-up model is the policy's start and the reference; the value head shares its backbone.
    policy = load_model(config, accelerator.device,
                        tokenizer_texts(training_pairs(task, train), [task.prompt(e) for e in dev]))
    tokenizer, reference = policy.tokenizer, reference_policy(policy.model)
    model = PolicyWithValueHead(policy.model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    head = list(model.value_head.parameters())
    backbone = [p for p in trainable if all(p is not h for h in head)]
    optimizer = adamw(
        [{"params": backbone}, {"params": head, "lr": config.value_head_learning_rate or config.learning_rate}],
        config.learning_rate, config.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)
    state = {"step": 0, "best_dev_accuracy": -1.0, "best_step": None}
    if resume_from:
        accelerator.load_state(str(resume_from / "state"))  # weights, optimizer, RNG of every process
        state = read_trainer_state(resume_from)
    params = SamplingParams(temperature=config.temperature, top_k=config.top_k, top_p=config.top_p,
                            max_new_tokens=config.max_new_tokens, num_samples=config.num_samples_per_question)
    estimate = ADVANTAGE_ESTIMATORS[config.advantage_estimator]
    use_values = config.advantage_estimator == "gae"
    sum_across_processes = lambda t: accelerator.reduce(t, reduction="sum")  # noqa: E731
    tracker = Tracker(folder, sinks(config.report_to), as_dict(config), enabled=main)
    bar = progress_bar(total_steps, "rl", config.progress and main, initial=state["step"])
    started, stopped = time.perf_counter(), None

    for step in range(state["step"], total_steps):
        times, step_started = {}, time.perf_counter()
        epoch, questions = step_questions(train, config, step, steps_per_epoch)
        mine = shard(questions, accelerator)

        # 1. sample completions from the current policy
        with timer(times, "sampling"):
            rollout = sample(unwrapped.policy, tokenizer, [task.prompt(q) for q in mine], params,
                             value_head=unwrapped.value_head if use_values else None)
        # 2. score final answers: 1.0 right, 0.1 parsed but wrong, 0.0 none
        with timer(times, "scoring"):
            answers = task.extract_answers(rollout.texts)
            golds = [q.answer for q in mine for _ in range(params.num_samples)]
            scores = torch.tensor([score_answer(task, a, g) for a, g in zip(answers, golds)],
                                  device=accelerator.device)
        # 3. old log-probs and values come with the samples; reference log-probs (one pass)
        with timer(times, "forward"):
            sequences, attention, response = rollout.sequences, rollout.attention_mask, rollout.response_mask
            layout = (rollout.prompt_length, config.micro_batch_size, params.num_samples)
            old_logps = rollout.old_logps
            values = rollout.values if use_values else torch.zeros_like(old_logps)
            if reference is None:
                with unwrapped.policy.disable_adapter():
                    ref_logps = reference_forward(unwrapped.policy, sequences, attention, *layout)
            else:
                ref_logps = reference_forward(reference, sequences, attention, *layout)
            old_logps, values = old_logps * response, values * response
        # 4. token rewards = terminal score - beta * KL; advantages and returns
        kl = kl_penalty(old_logps, ref_logps, config.kl_estimator) * response
        beta = config.kl_coef if config.kl_in == "reward" else 0.0
        rewards = token_rewards(scores, kl, response, beta)
        advantages, returns = estimate(rewards, values, response, gamma=config.gamma, lam=config.lam,
                                       num_samples_per_question=params.num_samples)
        if config.whiten_advantages:
            advantages = whiten(advantages, response, sum_across_processes)
        experience = Experience(sequences, attention, response, old_logps, ref_logps, values,
                                advantages, returns, rollout.prompt_length, params.num_samples)
        # 5. ppo_epochs of clipped updates
        with timer(times, "update"):
            update = ppo_update(accelerator, model, optimizer, trainable, experience, config, use_values)
        state["step"] = step + 1

        # 6. log, evaluate on dev, checkpoint
        metrics = step_metrics(accelerator, scores, kl, response, values, returns, update, times,
                               time.perf_counter() - step_started, use_values)
        tracker.log({**metrics, "epoch": epoch}, state["step"])
        bar.update(1)
        bar.set_postfix(reward=f"{metrics['reward_mean']:.3f}", kl=f"{metrics['kl']:.3f}")
        if metrics["kl"] > config.max_kl:
            stopped = (f"the mean KL to the reference reached {metrics['kl']:.2f} (> max_kl {config.max_kl}) "
                       f"at step {state['step']}: the policy is running away from the warm-up model; "
                       f"lower learning_rate or raise kl_coef")
        out_of_time = budget_spent(accelerator, started, config.max_seconds)
        if state["step"] % config.eval_every == 0 or state["step"] == total_steps or stopped or out_of_time:
            evaluate_and_checkpoint(accelerator, config, task, unwrapped.policy, tokenizer, dev, folder, state, epoch,
                                    export_model(unwrapped, tokenizer), tracker, bar, total_steps)
        if out_of_time:
            break
        if stopped:
            if main:
                bar.write(f"reftune rl: stopping: {stopped}")
            break

    return finish_run(folder, state, started, main, bar, tracker, stopped=stopped)


def step_metrics(accelerator, scores, kl, response, values, returns, update: dict, times: dict,
                 seconds: float, use_values: bool) -> dict:
    """The step's figures over all processes (sums reduced, then divided)."""
    sums = torch.stack([scores.sum(), (scores == CORRECT_REWARD).float().sum(), (scores == 0).float().sum(),
                        torch.tensor(float(len(scores)), device=scores.device),
                        kl.sum(), response.sum().float()])
    reward, correct, no_answer, rows, kl_sum, tokens = accelerator.reduce(sums, reduction="sum").tolist()
    metrics = {"reward_mean": reward / rows, "sample_accuracy": correct / rows, "no_answer_rate": no_answer / rows,
               "kl": kl_sum / rows, "response_length": tokens / rows,
               "completion_tokens_per_s": tokens / seconds, **update, **times}
    if use_values:
        metrics["value_explained_variance"] = explained_variance(values, returns, response)
    return metrics
