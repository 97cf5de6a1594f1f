"""`reftune demo`: the whole method on the built-in arithmetic task, ending with an answer to "did
reinforcement help?".

1. a base model that knows arithmetic language (pretrained once by reftune, then cached);
2. warm-up SFT on one gold CoT per training question;
3. two branches from the same warm-up checkpoint, each given the same wall-clock budget:
   ReFT (RL stage) and continued SFT (the paper's SFT baseline), each picking its best checkpoint
   on dev;
4. greedy top-1 and majority vote of the warm-up and of both branches on held-out test questions;
5. a report folder: table, plots, example completions, one self-contained HTML page.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from reftune.config import DemoConfig, EvalConfig, RLConfig, SFTConfig
from reftune.errors import ReftuneError
from reftune.options import config_to_yaml
from reftune.stages.common import output_folder, save_config

BUILT_IN_BASE = "arithmetic-base"


@dataclass(frozen=True)
class Plan:
    """The settings the demo derives from its config (smaller throughout with --quick)."""

    base_spec: object
    train_questions: int
    dev_questions: int
    test_questions: int
    warmup_epochs: int
    branch_seconds: float
    vote_samples: int
    max_new_tokens: int


def make_plan(config: DemoConfig) -> Plan:
    from reftune.models import TinySpec
    from reftune.stages.pretrain import BaseSpec

    if config.quick:
        return Plan(BaseSpec(model=TinySpec(hidden_size=64, num_layers=2), corpus_problems=1500, corpus_statements=3000,
                             steps=150, block_size=128, task_options=config.task_options), min(config.train_questions, 64),
                    min(config.dev_questions, 16), min(config.test_questions, 32), 2, 12.0, 4, 120)
    return Plan(BaseSpec(task_options=config.task_options), config.train_questions, config.dev_questions, config.test_questions,
                config.warmup_epochs, config.branch_seconds, config.vote_samples, config.max_new_tokens)


def demo(config: DemoConfig) -> dict:
    from reftune.report import branch_plots, example_completions, markdown_table, write_html
    from reftune.stages.evaluate import evaluate
    from reftune.stages.pretrain import pretrain_base
    from reftune.stages.rl import rl
    from reftune.stages.sft import sft

    started = time.perf_counter()
    if config.output and Path(config.output).exists() and any(Path(config.output).iterdir()):
        raise ReftuneError(f"--output {config.output} already holds files: the demo writes a new report "
                           f"folder; choose a new --output (or leave it out for runs/demo-<time>)")
    folder = output_folder(config, "demo")
    save_config(config, folder, announce=False)
    plan = make_plan(config)
    common = dict(task="arithmetic", task_options=config.task_options, seed=config.seed, progress=config.progress, report_to=config.report_to,
                  eval_limit=plan.dev_questions, eval_max_new_tokens=plan.max_new_tokens)

    # 1. the base model
    say(f"[1/5] base model: {config.model}")
    base = str(pretrain_base(plan.base_spec, config.progress)) if config.model == BUILT_IN_BASE else config.model

    # 2. warm-up SFT on one gold CoT per question
    say(f"[2/5] warm-up SFT: {plan.train_questions} questions x {plan.warmup_epochs} epochs")
    batch = 16 if plan.train_questions >= 16 else plan.train_questions
    sft_options = dict(common, max_train_examples=plan.train_questions, batch_size=batch, micro_batch_size=batch,
                       learning_rate=config.sft_learning_rate, warmup_ratio=0.05, max_length=400)
    sft(SFTConfig(**sft_options, model=base, epochs=plan.warmup_epochs, output=str(folder / "warmup")))
    warm = str(folder / "warmup" / "best")

    # 3. two branches from the warm-up, the same budget each
    say(f"[3/5] ReFT branch: {plan.branch_seconds:.0f} s of RL from the warm-up checkpoint")
    rl(RLConfig(**common, model=warm, max_train_examples=plan.train_questions, max_seconds=plan.branch_seconds,
                questions_per_step=min(config.questions_per_step, plan.train_questions),
                num_samples_per_question=config.num_samples_per_question, learning_rate=config.rl_learning_rate,
                advantage_estimator=config.advantage_estimator,
                value_head_learning_rate=config.value_head_learning_rate, max_new_tokens=plan.max_new_tokens,
                micro_batch_size=16, eval_every=10, output=str(folder / "reft")))
    say(f"[4/5] SFT branch: {plan.branch_seconds:.0f} s of continued SFT from the same checkpoint")
    sft(SFTConfig(**sft_options, model=warm, epochs=1000, max_seconds=plan.branch_seconds,
                  eval_every=max(1, 2 * plan.train_questions // batch), output=str(folder / "sft")))

    # 4. the held-out test: greedy top-1 and majority vote
    say(f"[5/5] test: {plan.test_questions} held-out questions, greedy and vote@{plan.vote_samples}")
    models = {"warm-up": warm, "SFT": str(folder / "sft" / "best"), "ReFT": str(folder / "reft" / "best")}
    results = {}
    for name, model in models.items():
        evaluation = dict(task="arithmetic", task_options=config.task_options, model=model, split="test", limit=plan.test_questions,
                          max_new_tokens=plan.max_new_tokens, batch_size=32, seed=config.seed,
                          progress=config.progress, report_to="jsonl")
        greedy = evaluate(EvalConfig(**evaluation, output=str(folder / "eval" / f"{slug(name)}-greedy")))
        voted = evaluate(EvalConfig(**evaluation, temperature=1.0, num_samples=plan.vote_samples,
                                    output=str(folder / "eval" / f"{slug(name)}-vote")))
        run_summary = json.loads((Path(model).parent / "summary.json").read_text())
        results[name] = {"top1": greedy["top1_accuracy"], "vote": voted[f"vote@{plan.vote_samples}_accuracy"],
                         "dev": run_summary["best_dev_accuracy"]}

    # 5. the report
    headers = ["model", "test top-1", f"test vote@{plan.vote_samples}", "best dev top-1"]
    rows = [[name, pct(r["top1"]), pct(r["vote"]), pct(r["dev"])] for name, r in results.items()]
    gap = results["ReFT"]["top1"] - results["SFT"]["top1"]
    verdict = (f"ReFT minus continued SFT: {100 * gap:+.1f} points of test top-1, each given the same "
               f"{plan.branch_seconds:.0f} s of compute after the warm-up"
               + (" (--quick: a smoke run, no claim)" if config.quick else ""))
    plots = branch_plots(folder, {"warm-up": folder / "warmup", "SFT": folder / "sft", "ReFT": folder / "reft"})
    examples = {name: example_completions(folder / "eval" / f"{slug(name)}-greedy" / "test-samples.jsonl")
                for name in ("SFT", "ReFT")}
    seconds = round(time.perf_counter() - started, 1)
    summary = {"results": results, "gap_top1": gap, "seconds": seconds, "quick": config.quick,
               "base_model": base, "verdict": verdict}
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    table = markdown_table(headers, rows)
    (folder / "report.md").write_text(f"# reftune demo\n\n{verdict}.\n\n{table}\n\nWall time: {seconds} s.\n")
    report = write_html(folder / "report.html", "reftune demo: ReFT against SFT on arithmetic",
                        f"{verdict}. Wall time {seconds} s.", headers, rows, plots, examples,
                        config_to_yaml(replace(config)))
    print(f"\n{table}\n\n{verdict}.\nReport: {report}  (wall time {seconds} s)", flush=True)
    return summary


def slug(name: str) -> str:
    return name.lower().replace(" ", "-")


def pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def say(message: str) -> None:
    print(message, flush=True)
