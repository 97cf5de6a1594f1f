"""Evaluation: sample (or decode greedily) for each question, extract and score the answers, then
top-1 accuracy, majority vote and pass@k. `reftune eval` and `reftune sample` run `evaluate`."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import torch

from reftune.config import EvalConfig
from reftune.rewards import CORRECT_REWARD, score_answer
from reftune.rollout import SamplingParams, sample
from reftune.selection import accuracy, majority_vote, pass_at_k, pass_at_k_levels, rerank
from reftune.tasks import Example, Task
from reftune.tracking import progress_bar


@dataclass(frozen=True)
class QuestionSamples:
    """Everything sampled for one question, in sample order."""

    example: Example
    completions: list[str]
    answers: list            # extracted answer per completion, None where there is none
    rewards: list[float]     # the ReFT reward per completion
    finished: list[bool] = field(default_factory=list)  # False: cut at max_new_tokens
    scores: list[float] = field(default_factory=list)   # the verifier's P(correct), when reranking

    @property
    def correct(self) -> list[bool]:
        return [reward == CORRECT_REWARD for reward in self.rewards]

    def to_json(self, task: Task) -> dict:
        voted = majority_vote(self.answers, task.is_correct)
        row = {"id": self.example.id, "question": self.example.question, "gold": self.example.answer,
               "samples": self.completions, "answers": self.answers, "rewards": self.rewards,
               "correct": self.correct, "finished": self.finished, "vote": voted,
               "vote_correct": voted is not None and task.is_correct(voted, self.example.answer)}
        if self.scores:
            picked = rerank(self.answers, self.scores)
            row.update(verifier_scores=self.scores, rerank=picked,
                       rerank_correct=picked is not None and task.is_correct(picked, self.example.answer))
        return row


def sample_questions(task: Task, model, tokenizer, examples: list[Example], params: SamplingParams,
                     batch_size: int, generator: torch.Generator | None = None,
                     show_progress: bool = False) -> list[QuestionSamples]:
    """params.num_samples completions per example, scored with the ReFT reward."""
    results = []
    bar = progress_bar(len(examples), "sampling", show_progress)
    for start in range(0, len(examples), batch_size):
        batch = examples[start:start + batch_size]
        rollout = sample(model, tokenizer, [task.prompt(e) for e in batch], params, generator)
        answers = task.extract_answers(rollout.texts)  # one batched sandbox call for P-CoT
        k = params.num_samples
        for i, example in enumerate(batch):
            rows = slice(i * k, (i + 1) * k)
            results.append(QuestionSamples(
                example, rollout.texts[rows], answers[rows],
                [score_answer(task, answer, example.answer) for answer in answers[rows]],
                rollout.finished[rows].tolist()))
        bar.update(len(batch))
    bar.close()
    return results


def summarize(task: Task, results: list[QuestionSamples], greedy: bool) -> dict:
    """Accuracy figures over questions: top-1 when greedy; vote@K and pass@k when sampled."""
    if not results:
        return {"questions": 0}
    k = len(results[0].completions)
    summary = {"questions": len(results), "samples_per_question": k,
               "mean_reward": sum(sum(r.rewards) for r in results) / (k * len(results)),
               "sample_accuracy": sum(sum(r.correct) for r in results) / (k * len(results)),
               "no_answer_rate": sum(a is None for r in results for a in r.answers) / (k * len(results)),
               "cut_at_max_length": sum(not f for r in results for f in r.finished)}
    if greedy:
        summary["top1_accuracy"] = accuracy([r.correct[0] for r in results])
    else:
        votes = [majority_vote(r.answers, task.is_correct) for r in results]
        summary[f"vote@{k}_accuracy"] = accuracy(
            [v is not None and task.is_correct(v, r.example.answer) for v, r in zip(votes, results)])
        for level in pass_at_k_levels(k):
            summary[f"pass@{level}"] = sum(pass_at_k(k, sum(r.correct), level) for r in results) / len(results)
    if all(r.scores for r in results):
        picks = [rerank(r.answers, r.scores) for r in results]
        summary[f"rerank@{k}_accuracy"] = accuracy(
            [p is not None and task.is_correct(p, r.example.answer) for p, r in zip(picks, results)])
        summary[f"upper_bound@{k}"] = accuracy([any(r.correct) for r in results])  # some sample is right
    return summary


def add_verifier_scores(accelerator, task: Task, verifier_folder: str, results: list[QuestionSamples],
                        batch_size: int) -> list[QuestionSamples]:
    """The results with each sample's P(correct) under the verifier (each process scores its share)."""
    from dataclasses import replace

    from accelerate.utils import gather_object

    from reftune.models import load_verifier
    from reftune.stages.common import shard
    from reftune.stages.verifier import verifier_scores

    verifier, tokenizer = load_verifier(verifier_folder, accelerator.device)
    mine = shard(list(enumerate(results)), accelerator)
    scored = [(index, replace(result, scores=verifier_scores(
        verifier, tokenizer, [(task.prompt(result.example), c) for c in result.completions], batch_size)))
        for index, result in mine]
    return [result for _, result in sorted(gather_object(scored), key=lambda pair: pair[0])]


def greedy_accuracy(accelerator, task: Task, model, tokenizer, examples: list[Example],
                    max_new_tokens: int, batch_size: int, show_progress: bool = False) -> float:
    """Top-1 accuracy on `examples`, each process decoding its share (the dev check of training)."""
    from reftune.stages.common import shard

    params = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens)
    mine = shard(examples, accelerator)
    results = sample_questions(task, model, tokenizer, mine, params, batch_size, show_progress=show_progress)
    counts = torch.tensor([sum(r.correct[0] for r in results), len(results)], device=accelerator.device)
    correct, total = accelerator.reduce(counts, reduction="sum").tolist()
    return correct / max(total, 1)


def evaluate(config: EvalConfig) -> dict:
    """Load the model and the split, sample, write <split>-samples.jsonl and summary.json."""
    from reftune.stages.common import (build_accelerator, load_examples, load_model, output_folder,
                                       save_config, seed_everything)
    from reftune.stages.samples import sample_split, write_samples

    # 1. the run folder, the data and the model
    accelerator = build_accelerator()
    main = accelerator.is_main_process
    folder = output_folder(config, "eval")
    if main:
        save_config(config, folder, announce=config.progress)
    seed_everything(config.seed)
    task, examples = load_examples(config, config.split, config.limit)
    texts = [task.prompt(e) + (task.target(e) if e.cot else "") for e in examples]
    policy = load_model(config, accelerator.device, tokenizer_texts=texts)

    # 2. sample each process's share of the questions; score with the verifier when reranking
    params = SamplingParams(temperature=config.temperature, top_k=config.top_k, top_p=config.top_p,
                            max_new_tokens=config.max_new_tokens, num_samples=config.num_samples)
    started = time.perf_counter()
    results = sample_split(accelerator, task, policy.model, policy.tokenizer, examples, params, config.batch_size,
                           config.seed, config.progress and main)
    if config.mode == "rerank":
        results = add_verifier_scores(accelerator, task, config.verifier, results, config.batch_size)

    # 3. score and write
    summary = {"model": config.model, "task": config.task, "style": config.style, "split": config.split,
               "mode": config.mode, **summarize(task, results, params.greedy),
               "seconds": round(time.perf_counter() - started, 2)}
    if main:
        write_samples(folder / f"{config.split}-samples.jsonl", task, results)
        (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
