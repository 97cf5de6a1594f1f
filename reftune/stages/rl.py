"""ReFT's RL stage: PPO from the warm-up model with a value head on the shared backbone, the answer's
correctness as the terminal reward and a per-token KL penalty to the frozen warm-up model.

Departures from the authors' scripts: the best checkpoint is chosen on a dev split, never on test;
MCQ answers earn no partial reward; the group estimators offer value-free variants (no value head is
built for them); `kl_in: loss` moves the KL from the reward into the loss (an option, not the paper's).
Old log-probs and values are read off the sampling passes themselves (the value head applied to the
hidden states decoding computes anyway), so the only extra pass is the reference's; with LoRA the
reference is the same weights with the adapters switched off.
"""
from __future__ import annotations

import copy
import math
import numbers
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch

from reftune.algorithms.advantages import ADVANTAGE_ESTIMATORS, VALUE_HEAD_ESTIMATORS, token_rewards, whiten
from reftune.algorithms.diagnostics import (SignalCounts, informative_rows, no_signal_streak, no_signal_warning,
                                            signal_counts)
from reftune.algorithms.losses import drop_truncated, explained_variance, kl_penalty
from reftune.config import RLConfig
from reftune.errors import ReftuneError
from reftune.generation.rollout import Rollout, SamplingParams, concat_rollouts, sample, select_rows
from reftune.model.heads import PolicyWithValueHead
from reftune.model.loading import disable_gradient_checkpointing, is_gradient_checkpointing, is_lora
from reftune.scoring.rewards import CORRECT_REWARD, RewardFn, score_answer
from reftune.tasks import Task
from reftune.training.batches import example_texts
from reftune.training.data import epoch_order, epoch_slice, load_examples, plan_on_policy, shard, use_prompt_format
from reftune.training.ppo import Experience, ppo_update, reference_forward
from reftune.training.preparation import adamw, load_model
from reftune.training.run import Run
from reftune.training.samples import greedy_accuracy
from reftune.training.sharding import gathered
from reftune.training.summaries import RLSummary
from reftune.training.tracking import strict_json

if TYPE_CHECKING:
    from accelerate import Accelerator

ROLLOUTS_FILE = "rollouts.jsonl"
# ppo_update skips an update whose loss or gradient is not finite (and counts it in skipped_updates);
# one such step is a glitch the run outlives, as many in a row are a run that can no longer learn.
UPDATE_FIGURES = ("policy_loss", "value_loss", "kl_loss", "grad_norm")
NON_FINITE_PATIENCE = 3


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
    if is_gradient_checkpointing(reference):  # it runs no backward pass: nothing to recompute
        disable_gradient_checkpointing(reference)
    return reference


def variant_metrics(config: RLConfig, step: int, rounds: int) -> dict:
    """What this step's variant options did: dynamic sampling's extra rounds, and whether the policy
    waited while the critic warmed up."""
    metrics = {}
    if config.dynamic_sampling:
        metrics["dynamic_sampling_rounds"] = rounds
    if config.critic_warmup_steps:
        metrics["critic_warmup"] = int(step < config.critic_warmup_steps)
    return metrics


def rl(config: RLConfig, reward_fn: RewardFn | None = None) -> RLSummary:
    """Run ReFT's RL stage; returns a summary. Every step is numbered as in the paper's algorithm.
    reward_fn(completions, golds, examples) -> one float per completion replaces the answer reward
    (golds and examples are given per completion, so K samples of a question repeat its gold)."""
    run = Run(config, "rl", RLConfig, seed_per_process=True)  # each process samples differently
    accelerator = run.accelerator
    task, train = load_examples(config, config.train_split, config.max_train_examples)
    _, dev = load_examples(config, config.dev_split, config.eval_limit)
    use_prompt_format(task, config, train)
    steps_per_epoch, total_steps = plan_on_policy(config, len(train), accelerator.num_processes)
    ctx = step_context(run, task, train, dev, reward_fn)
    run.begin(total_steps, finite=UPDATE_FIGURES, patience=NON_FINITE_PATIENCE, logs=(ROLLOUTS_FILE,))
    evaluate = lambda: greedy_accuracy(accelerator, task, ctx.unwrapped.policy, ctx.tokenizer, dev,  # noqa: E731
                                       config.eval_max_new_tokens, config.dev_batch_size)
    export = lambda path, weights=None: ctx.unwrapped.export(ctx.tokenizer, path, weights)  # noqa: E731

    no_signal_steps, capped_said = 0, False
    for step in range(run.state.step, total_steps):
        step_started = time.perf_counter()
        epoch, questions = epoch_slice(train, config.seed, step, steps_per_epoch, config.questions_per_step)
        done = rl_step(ctx, step, shard(questions, accelerator))  # 1-5, below

        # 6. log, evaluate on dev, checkpoint
        metrics = {**step_metrics(ctx, done, time.perf_counter() - step_started), "epoch": epoch,
                   **variant_metrics(config, step, done.rounds)}
        no_signal = metrics["no_signal_group_share"]
        run.step_done(metrics, reward=f"{metrics['reward_mean']:.3f}", kl=f"{metrics['kl']:.3f}",
                      **({"no_signal": f"{no_signal:.0%}"} if ctx.params.num_samples > 1 else {}))
        no_signal_steps = no_signal_streak(no_signal_steps, no_signal)
        warning = no_signal_warning(no_signal_steps)
        if config.dynamic_sampling and done.rounds == config.max_dynamic_sampling_rounds and not capped_said:
            capped_said, warning = True, dynamic_sampling_capped(done.rounds, run.state.step)
        if warning and run.main:
            run.bar.write(f"reftune rl: {warning}")
        if config.log_rollouts_every and run.state.step % config.log_rollouts_every == 0 and run.main:
            log_rollouts(run.folder / ROLLOUTS_FILE, run.state.step, done.scored, config.rollouts_per_step,
                         ctx.params.num_samples)
        if metrics["kl"] > config.max_kl:
            run.stop(f"the mean KL to the reference reached {metrics['kl']:.2f} (> max_kl {config.max_kl}) at step "
                     f"{run.state.step}: the policy is running away from the warm-up model; lower learning_rate or "
                     f"raise kl_coef")
        if run.due(config.eval_every):
            run.checkpoint(evaluate, export, epoch)
        if run.stopping:
            break

    if run.stop_reason and not run.interrupted and run.main:
        print(f"reftune rl: stopping: {run.stop_reason}", flush=True)
    return run.finish(RLSummary)


@dataclass(frozen=True)
class StepContext:
    """What every RL step shares, built once before the loop (step_context)."""

    config: RLConfig
    task: Task
    train: list                    # the training examples: dynamic sampling draws more questions from them
    accelerator: Accelerator
    model: torch.nn.Module         # the policy with its value head as accelerate prepared it: the update's
    unwrapped: PolicyWithValueHead  # the same weights, called directly: sampling, the dev check, export
    tokenizer: object
    reference: torch.nn.Module | None  # the frozen warm-up model; None with LoRA (the adapters switched off)
    optimizer: torch.optim.Optimizer
    trainable: list                # the prepared model's trainable weights (FSDP makes new ones)
    params: SamplingParams         # num_samples_per_question completions per question
    reward_fn: RewardFn | None = None

    @property
    def use_values(self) -> bool:
        """Whether the estimator reads values (GAE): the policy then has a value head."""
        return self.unwrapped.value_head is not None

    def sum_across_processes(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(tensor, reduction="sum")


def step_context(run: Run, task: Task, train: list, dev: list, reward_fn: RewardFn | None) -> StepContext:
    """The policy, its reference and its optimizer, prepared by accelerate (and, resuming, restored)."""
    config, accelerator = run.config, run.accelerator
    # The warm-up model is the policy's start and the reference; the value head shares its backbone.
    policy = load_model(config, accelerator.device, example_texts(task, train) + [task.prompt(e) for e in dev])
    reference = reference_policy(policy.model)
    model = PolicyWithValueHead(policy.model, value_head=config.advantage_estimator in VALUE_HEAD_ESTIMATORS)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = adamw(parameter_groups(model, trainable, config), config.learning_rate, config.weight_decay)
    model, optimizer = run.prepare(model, optimizer)  # and, resuming, weights, optimizer, RNG of every process
    trainable = [p for p in model.parameters() if p.requires_grad]  # the prepared ones: FSDP makes new ones
    return StepContext(config, task, train, accelerator, model, accelerator.unwrap_model(model), policy.tokenizer,
                       reference, optimizer, trainable, SamplingParams.of(config, config.num_samples_per_question),
                       reward_fn)


@dataclass(frozen=True)
class StepResult:
    """What one step did on this process."""

    scored: Scored             # the samples trained on, scored
    signal: SignalCounts       # the first round's signal, before dynamic sampling filtered it
    rounds: int                # dynamic sampling's extra rounds
    experience: Experience
    kl: torch.Tensor           # (N, L) the per-token KL to the reference
    update: dict               # the update's figures (ppo.UpdateFigures)
    times: dict                # seconds of each phase


def rl_step(ctx: StepContext, step: int, questions: list) -> StepResult:
    """Steps 1-5 of the paper's algorithm on this process's `questions`; step 6 is the loop's."""
    config, params, times = ctx.config, ctx.params, {}
    # 1. sample completions from the current policy; 2. score final answers: 1.0 right, 0.1 parsed
    #    but wrong, 0.0 none (dynamic sampling: more questions until every group has signal). Under
    #    FSDP the weights are gathered once for the whole phase, not per token (sharding.gathered).
    with gathered(ctx.model):
        scored, signal, rounds = sample_step(ctx, step, questions, times)
    # 3. old log-probs and values came with the samples; the reference's log-probs take one pass
    with timer(times, "reference"):
        ref_logps = reference_logps(ctx, scored.rollout)
    # 4. token rewards = terminal score - beta * KL; advantages and returns
    experience, kl = build_experience(config, scored.rollout, scored.scores, ref_logps, ctx.use_values,
                                      ctx.sum_across_processes, params.num_samples)
    # 5. ppo_epochs of clipped updates (the value head's alone while the critic warms up)
    with timer(times, "update"):
        update = ppo_update(ctx.accelerator, ctx.model, ctx.optimizer, ctx.trainable, experience, config,
                            ctx.use_values, critic_only=step < config.critic_warmup_steps)
    return StepResult(scored, signal, rounds, experience, kl, update, times)


@dataclass(frozen=True)
class Scored:
    """Sampled completions of some questions, their extracted answers and rewards."""

    rollout: Rollout
    questions: list      # Example per prompt; the rollout's rows come in groups of K per question
    answers: list        # per row, None where no answer could be extracted
    scores: torch.Tensor  # (rows,) the ReFT reward per row


def sample_and_score(ctx: StepContext, questions: list, times: dict) -> Scored:
    """Sample params.num_samples completions per question (with values when there is a value head) and
    score their final answers: 1.0 right, 0.1 parsed but wrong, 0.0 none (or with the user's reward_fn).
    Adds the time of each to `times`."""
    task, model, num_samples = ctx.task, ctx.unwrapped, ctx.params.num_samples
    with timer(times, "sampling"):
        rollout = sample(model.policy, ctx.tokenizer, [task.prompt(q) for q in questions], ctx.params,
                         value_head=model.value_head)
    with timer(times, "scoring"):  # P-CoT: the programs run in the sandbox here
        answers = task.extract_answers(rollout.texts)  # also read with a reward_fn: the diagnostics use them
        examples = [q for q in questions for _ in range(num_samples)]
        golds = [q.answer for q in examples]
        rewards = (user_rewards(ctx.reward_fn, rollout.texts, golds, examples) if ctx.reward_fn
                   else [score_answer(task, a, g) for a, g in zip(answers, golds)])
        scores = torch.tensor(rewards, dtype=torch.float32, device=rollout.sequences.device)
    return Scored(rollout, questions, answers, scores)


def user_rewards(reward_fn: RewardFn, completions: list[str], golds: list, examples: list) -> list[float]:
    """reward_fn's scores, checked: one finite number per completion (a Python, numpy or 0-d torch
    number; not a bool, which is more likely a mistake than a reward)."""
    if not callable(reward_fn):
        raise ReftuneError(f"reward_fn must be a function (completions, golds, examples) -> rewards, got {reward_fn!r}")
    returned = reward_fn(completions, golds, examples)
    try:
        rewards = list(returned)
    except TypeError:
        raise ReftuneError(f"reward_fn returned {returned!r}: return a list of rewards, one per completion") from None
    if len(rewards) != len(completions):
        raise ReftuneError(f"reward_fn returned {len(rewards)} rewards for {len(completions)} completions: "
                           f"return one per completion")
    values = [reward_number(r) for r in rewards]
    if None in values:
        bad = rewards[values.index(None)]
        raise ReftuneError(f"reward_fn returned {bad!r}: every reward must be a finite number (int, float, a numpy "
                           f"scalar or a 0-d tensor; not a bool)")
    return values


def reward_number(reward) -> float | None:
    """`reward` as a float, or None when it is not a finite real number.

    >>> reward_number(torch.tensor(0.5)), reward_number(1), reward_number(True), reward_number(float("nan"))
    (0.5, 1.0, None, None)
    """
    if isinstance(reward, torch.Tensor):
        if reward.ndim or reward.dtype == torch.bool or reward.is_complex():
            return None
        reward = reward.item()
    if isinstance(reward, bool) or not isinstance(reward, numbers.Real) or not math.isfinite(float(reward)):
        return None
    return float(reward)


def sample_step(ctx: StepContext, step: int, mine: list, times: dict) -> tuple[Scored, SignalCounts, int]:
    """This process's questions sampled and scored; with dynamic sampling, filled with questions that
    carry signal. Also the first round's signal counts (before any filtering) and the extra rounds."""
    config, num_samples = ctx.config, ctx.params.num_samples
    scored = sample_and_score(ctx, mine, times)
    signal = signal_counts(scored.scores, num_samples, scored.rollout.finished,
                           torch.tensor([a is not None for a in scored.answers]))
    if not config.dynamic_sampling:
        return scored, signal, 0
    scored, rounds = fill_with_signal(scored, lambda round_: shard(extra_questions(ctx.train, config, step, round_),
                                                                   ctx.accelerator),
                                      config.max_dynamic_sampling_rounds, ctx.accelerator,
                                      lambda questions: sample_and_score(ctx, questions, times),
                                      num_samples, ctx.tokenizer.pad_token_id)
    return scored, signal, rounds


def extra_questions(train: list, config: RLConfig, step: int, round_: int) -> list:
    """questions_per_step more training questions for a dynamic-sampling round: a pure function of
    (seed, step, round), so a resumed run draws the same ones."""
    order = epoch_order(len(train), config.seed * 7919 + round_ + 1, step)
    return [train[i] for i in order[:config.questions_per_step]]


def fill_with_signal(first: Scored, extra: Callable[[int], list], max_rounds: int, accelerator,
                     sample_more: Callable[[list], Scored], group_size: int, pad_id: int) -> tuple[Scored, int]:
    """DAPO's dynamic sampling: keep the questions whose samples did not all get the same reward, and
    sample more questions (extra(round) gives them) until this process has as many as it started with,
    or max_rounds extra rounds are spent. Every process takes the same number of rounds. Returns the
    kept questions' samples (the first round as it was if none had signal) and the rounds taken."""
    wanted, parts, have, rounds = len(first.questions), [], 0, 0
    for round_ in range(max_rounds + 1):
        scored = first if round_ == 0 else sample_more(extra(round_ - 1)) if have < wanted else None
        if scored is not None:
            keep = informative_rows(scored.scores, group_size, max_groups=wanted - have)
            groups = keep.view(-1, group_size)[:, 0]
            parts.append(Scored(select_rows(scored.rollout, keep), [q for q, k in zip(scored.questions, groups) if k],
                                [a for a, k in zip(scored.answers, keep.tolist()) if k], scored.scores[keep]))
            have += int(groups.sum())
        rounds = round_
        unfilled = torch.tensor(float(have < wanted), device=accelerator.device)
        if float(accelerator.reduce(unfilled, reduction="sum")) == 0 or round_ == max_rounds:
            break
    parts = [part for part in parts if part.questions]
    if not parts:
        return first, rounds
    return Scored(concat_rollouts([p.rollout for p in parts], pad_id), [q for p in parts for q in p.questions],
                  [a for p in parts for a in p.answers], torch.cat([p.scores for p in parts])), rounds


def build_experience(config: RLConfig, rollout: Rollout, scores: torch.Tensor, ref_logps: torch.Tensor,
                     use_values: bool, sum_across_processes, group_size: int) -> tuple[Experience, torch.Tensor]:
    """The paper's step 4: token rewards = the terminal score - beta * KL(policy || reference), then
    the advantages (whitened over all processes) and returns. Also returns the per-token KL (N, L)."""
    response = rollout.response_mask
    old_logps = rollout.old_logps * response
    values = rollout.values * response if use_values else torch.zeros_like(old_logps)
    kl = kl_penalty(old_logps, ref_logps, config.kl_estimator) * response
    rewards = token_rewards(scores, kl, response, config.kl_coef if config.kl_in == "reward" else 0.0)
    advantages, returns = ADVANTAGE_ESTIMATORS[config.advantage_estimator](
        rewards, values, response, gamma=config.gamma, lam=config.lam, num_samples_per_question=group_size,
        sum_across_processes=sum_across_processes)
    if config.whiten_advantages:
        advantages = whiten(advantages, response, sum_across_processes)
    loss_mask = drop_truncated(response, rollout.finished) if config.mask_truncated else None
    return Experience(rollout.sequences, rollout.attention_mask, response, old_logps, ref_logps, values, advantages,
                      returns, rollout.prompt_length, group_size, loss_mask), kl


def dynamic_sampling_capped(rounds: int, step: int) -> str:
    return (f"dynamic sampling reached its cap of {rounds} extra rounds at step {step} without filling the step "
            f"with questions that carry signal; the step trained on those it found (raise max_dynamic_sampling_rounds)")


def parameter_groups(model: PolicyWithValueHead, trainable: list, config: RLConfig) -> list[dict]:
    """The backbone at the policy's lr; the value head, when there is one, at its own."""
    if model.value_head is None:
        return [{"params": trainable}]
    head = list(model.value_head.parameters())
    backbone = [p for p in trainable if all(p is not h for h in head)]
    return [{"params": backbone}, {"params": head, "lr": config.value_head_learning_rate or config.learning_rate}]


def reference_logps(ctx: StepContext, rollout: Rollout) -> torch.Tensor:
    """Token log-probs of the rollout under the frozen warm-up model at the sampling temperature:
    (N, L), 0 on prompt columns. With LoRA (no reference copy), the policy with its adapters switched off."""
    layout = (rollout.prompt_length, ctx.config.micro_batch_size, ctx.params.num_samples, ctx.params.temperature)
    policy = ctx.unwrapped.policy
    if ctx.reference is None:
        with policy.disable_adapter():
            return reference_forward(policy, rollout.sequences, rollout.attention_mask, *layout)
    return reference_forward(ctx.reference, rollout.sequences, rollout.attention_mask, *layout)


def log_rollouts(path, step: int, scored: Scored, limit: int, num_samples: int) -> None:
    """Append one samples row (the shape `reftune sample` writes, plus the step) for each of the first
    `limit` questions of the step."""
    scores = scored.scores.tolist()
    with open(path, "a") as out:
        for index, question in enumerate(scored.questions[:limit]):
            rows = slice(index * num_samples, (index + 1) * num_samples)
            out.write(strict_json({"step": step, "id": question.id, "question": question.question,
                                   "gold": question.answer, "samples": scored.rollout.texts[rows],
                                   "answers": scored.answers[rows], "rewards": scores[rows],
                                   "correct": [s == CORRECT_REWARD for s in scores[rows]]}, default=str) + "\n")


def step_metrics(ctx: StepContext, done: StepResult, seconds: float) -> dict:
    """The step's figures over all processes (sums reduced, then divided), and the shares of its
    questions' groups by signal."""
    accelerator, scores, kl = ctx.accelerator, done.scored.scores, done.kl
    response = done.experience.response_mask
    shares = SignalCounts.from_tensor(accelerator.reduce(done.signal.as_tensor(accelerator.device),
                                                         reduction="sum")).shares()
    sums = torch.stack([scores.sum(), (scores == CORRECT_REWARD).float().sum(), (scores == 0).float().sum(),
                        torch.tensor(float(len(scores)), device=scores.device),
                        kl.sum(), response.sum().float()])
    reward, correct, no_answer, rows, kl_sum, tokens = accelerator.reduce(sums, reduction="sum").tolist()
    metrics = {"reward_mean": reward / rows, "sample_accuracy": correct / rows, "no_answer_rate": no_answer / rows,
               "kl": kl_sum / rows, "response_length": tokens / rows,
               "completion_tokens_per_s": tokens / seconds, **done.update, **done.times}
    if ctx.use_values:
        metrics["value_explained_variance"] = explained_variance(done.experience.values, done.experience.returns,
                                                                 response)
    return {**metrics, **shares}
