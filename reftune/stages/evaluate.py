"""Evaluation: sample (or decode greedily) for each question, extract and score the answers, then
top-1 accuracy, majority vote and pass@k. `reftune eval` and `reftune sample` run `evaluate`."""
from __future__ import annotations

import time
from dataclasses import replace

from reftune.config import EvalConfig, SampleConfig
from reftune.config.stages import candidate_temperatures
from reftune.generation.rollout import SamplingParams
from reftune.scoring.selection import accuracy, majority_vote, pass_at_k, pass_at_k_levels, rerank
from reftune.tasks import Task
from reftune.training.batches import example_texts
from reftune.training.data import load_examples, use_prompt_format
from reftune.training.folders import announce, output_folder, release_lock, require_config, write_atomically
from reftune.training.preparation import build_accelerator, load_model, seed_everything
from reftune.training.samples import QuestionSamples, add_verifier_scores, sample_split, samples_name, write_samples
from reftune.training.summaries import EvalSummary
from reftune.training.tracking import strict_json


def summarize(task: Task, results: list[QuestionSamples], greedy: bool) -> dict:
    """EvalSummary's figures over questions: top-1 when greedy; vote@K and pass@k when sampled; rerank@K
    when the samples carry verifier scores."""
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
        summary["vote_accuracy"] = accuracy(
            [v is not None and task.is_correct(v, r.example.answer) for v, r in zip(votes, results)])
        summary["pass_at"] = {level: sum(pass_at_k(k, sum(r.correct), level) for r in results) / len(results)
                              for level in pass_at_k_levels(k)}
    if all(r.scores for r in results):
        picks = [rerank(r.answers, r.scores) for r in results]
        summary["rerank_accuracy"] = accuracy(
            [p is not None and task.is_correct(p, r.example.answer) for p, r in zip(picks, results)])
        summary["upper_bound"] = accuracy([any(r.correct) for r in results])  # some sample is right
    return summary


def votes_by_temperature(accelerator, task: Task, policy, config: EvalConfig, main: bool) -> dict[str, float]:
    """vote@K on the dev split at each of config.temperatures ({"0.7": 0.41, ...}); the first best wins."""
    _, dev = load_examples(config, config.dev_split, config.dev_limit)
    votes = {}
    for temperature in candidate_temperatures(config.temperatures):
        params = replace(SamplingParams.of(config, config.num_samples), temperature=temperature)
        results = sample_split(accelerator, task, policy.model, policy.tokenizer, dev, params, config.batch_size,
                               config.seed, config.progress and main)
        votes[str(temperature)] = summarize(task, results, greedy=False)["vote_accuracy"]
    if main:
        print(f"reftune eval: vote@{config.num_samples} on {config.dev_split} by temperature: "
              + ", ".join(f"{t}: {v:.1%}" for t, v in votes.items()), flush=True)
    return votes


def evaluate(config: EvalConfig) -> EvalSummary:
    """Load the model and the split, sample, write <split>-samples.jsonl (the split without its slice)
    and summary.json."""
    # 1. the run folder, the data and the model
    require_config(config, "evaluate", EvalConfig)
    accelerator = build_accelerator()
    main, stage = accelerator.is_main_process, "sample" if isinstance(config, SampleConfig) else "eval"
    folder = output_folder(config, stage, main=main)
    if main:
        announce(stage, config, folder)
    seed_everything(config.seed)
    task, examples = load_examples(config, config.split, config.limit)
    use_prompt_format(task, config, load_examples(config, "train")[1] if config.few_shot else [])
    policy = load_model(config, accelerator.device, tokenizer_texts=example_texts(task, examples))

    # 2. sample each process's share of the questions (at the temperature dev chose, when asked to
    #    choose); score with the verifier when reranking
    params = SamplingParams.of(config, config.num_samples)
    started, dev_votes = time.perf_counter(), {}
    if config.temperatures:
        dev_votes = votes_by_temperature(accelerator, task, policy, config, main)
        params = replace(params, temperature=float(max(dev_votes, key=dev_votes.get)))
    results = sample_split(accelerator, task, policy.model, policy.tokenizer, examples, params, config.batch_size,
                           config.seed, config.progress and main)
    if config.mode == "rerank":
        results = add_verifier_scores(accelerator, task, config.verifier, results, config.batch_size)

    # 3. score and write
    summary = EvalSummary(model=config.model, task=config.task, style=config.style, split=config.split,
                          mode=config.mode, **summarize(task, results, params.greedy), temperature=params.temperature,
                          dev_votes=dev_votes, seconds=round(time.perf_counter() - started, 2))
    if main:
        write_samples(folder / samples_name(config.split), task, results)
        write_atomically(folder / "summary.json", strict_json(summary.as_json(), indent=1))
        release_lock(folder)
    return summary
