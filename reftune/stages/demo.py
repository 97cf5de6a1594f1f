"""`reftune demo`: the whole method on the built-in arithmetic task, ending with an answer to "did
reinforcement help?".

1. a base model that knows arithmetic language (pretrained by reftune: packaged with it for the default
   settings, else built once; then cached);
2. warm-up SFT on one gold CoT per training question, for a fixed number of epochs;
3. two branches from the warm-up's last checkpoint, each given the same compute: ReFT (the RL stage,
   `rl_steps` steps, of which the first `critic_warmup_steps` train its fresh value head alone) and
   continued SFT (the paper's SFT baseline, the steps that cost the same), each picking on dev among
   its start and its own checkpoints; the two run side by side, ReFT in a second process, each on half
   the threads (a small model's step gains little from a second thread, so together they end sooner);
4. greedy top-1 and majority vote of the warm-up and of both branches on held-out test questions;
5. a report folder: table, plots, example completions, one self-contained HTML page.

Compute is counted in forward-pass rows, a backward pass as two forwards: an RL step samples
questions x samples rows (one pass each), scores them under the reference (one pass) and makes
ppo_epochs forward-and-backward passes over them; an SFT step makes one forward-and-backward pass over
its batch. Budgets in work, not seconds, make the table the same on every machine and a seeded run
repeat exactly.

With --all-methods, step 3 also runs the paper's baselines on the same compute (Offline-ST, Online-ST)
and trains a verifier, and step 4 adds reranking: the paper's table on the arithmetic task.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from reftune.algorithms.advantages import VALUE_HEAD_ESTIMATORS
from reftune.config import DemoConfig, OfflineSTConfig, OnlineSTConfig, RLConfig, SFTConfig, TinySpec, VerifierConfig
from reftune.config.options import config_to_yaml
from reftune.model.cpu_linear import chosen_path
from reftune.scoring.selection import certainty, paired_difference
from reftune.stages.compare import evaluate_models
from reftune.stages.online_st import online_st
from reftune.stages.pretrain import BaseSpec, pretrain_base
from reftune.stages.report import bar_chart, branch_plots, example_completions, markdown_table, write_html
from reftune.stages.rl import rl
from reftune.stages.sft import sft
from reftune.stages.verifier import verifier
from reftune.training.checkpoint import TrainerState, latest_checkpoint
from reftune.training.folders import announce, output_folder, release_lock, write_atomically
from reftune.training.side_by_side import beside
from reftune.training.tracking import read_metrics

BUILT_IN_BASE = "arithmetic-base"
PPO_EPOCHS = RLConfig.ppo_epochs  # the RL branch keeps the paper's 2
EVAL_BATCH = 256  # the tiny model decodes fastest in batches of about this size on 2 cores (512 is slower)


@dataclass(frozen=True)
class Plan:
    """The settings the demo derives from its config (smaller throughout with --quick)."""

    base_spec: BaseSpec
    train_questions: int
    dev_questions: int
    test_questions: int
    warmup_epochs: int
    rl_steps: int
    critic_warmup_steps: int
    sft_batch_size: int
    vote_samples: int
    vote_questions: int
    max_new_tokens: int
    self_training_samples: int
    verifier_epochs: int


def make_plan(config: DemoConfig) -> Plan:
    if config.quick:
        base = BaseSpec(model=TinySpec(hidden_size=64, num_layers=2), corpus_problems=1500, corpus_statements=3000,
                        steps=150, block_size=128, task_options=config.task_options)
        questions = min(config.train_questions, 64)
        rl_steps = min(config.rl_steps, 8)
        tests = min(config.test_questions, 32)
        return Plan(base, questions, min(config.dev_questions, 16), tests, 2, rl_steps,
                    min(config.critic_warmup_steps, rl_steps // 4), min(16, questions), 4, min(config.vote_questions, tests), 120,
                    min(config.self_training_samples, 4), 1)
    return Plan(BaseSpec(task_options=config.task_options), config.train_questions, config.dev_questions,
                config.test_questions, config.warmup_epochs, config.rl_steps, config.critic_warmup_steps,
                min(16, config.train_questions),
                config.vote_samples, min(config.vote_questions, config.test_questions), config.max_new_tokens,
                config.self_training_samples, 3)


def rl_step_rows(questions_per_step: int, samples_per_question: int, ppo_epochs: int) -> int:
    """Forward-pass rows of one RL step: sampling (1 pass), the reference (1), ppo_epochs x (forward
    + backward = 3)."""
    return questions_per_step * samples_per_question * (2 + 3 * ppo_epochs)


def equal_compute_steps(rl_steps: int, rl_rows: int, rows_per_step: int) -> int:
    """Steps of a branch whose step costs `rows_per_step` forward-pass rows that cost what `rl_steps`
    RL steps of `rl_rows` rows each cost.

    >>> equal_compute_steps(60, rl_step_rows(16, 4, 2), 3 * 16)  # continued SFT, batch 16
    640
    """
    return max(1, round(rl_steps * rl_rows / rows_per_step))


@dataclass(frozen=True)
class Pick:
    """The model a run stands for in the table, with its dev accuracy and where it came from."""

    model: str
    dev_accuracy: float
    label: str


def pick(run: Path, start: Pick | None = None) -> Pick:
    """A branch's model chosen on dev among its start and its own checkpoints: a checkpoint must beat
    the start to be chosen, so no branch is scored below the model it started from on dev (continued
    SFT often overfits the single CoTs: its own best can be worse than where it began)."""
    summary = json.loads((run / "summary.json").read_text())
    best = summary["best_dev_accuracy"]
    if start is not None and (best is None or best <= start.dev_accuracy):
        return start
    return Pick(summary["best_model"], best, f"step {summary['best_step']}")


def final_dev_accuracy(run: Path) -> float:
    """The dev accuracy a run logged last (the warm-up's, at its last epoch)."""
    return [m["dev_accuracy"] for m in read_metrics(run) if "dev_accuracy" in m][-1]


def warm_up_start(demo_folder: Path) -> Pick:
    """Where the branches of a demo run start: its warm-up's last epoch, with that epoch's dev accuracy."""
    warm = str(latest_checkpoint(demo_folder / "warmup") / "model")
    return Pick(warm, final_dev_accuracy(demo_folder / "warmup"), "its start (the warm-up)")


def demo(config: DemoConfig) -> dict:
    started = time.perf_counter()
    folder = output_folder(config, "demo")
    announce("demo", config, folder)
    say(f"CPU linear layers: {chosen_path()}; REFTUNE_CPU_LINEAR=torch or onednn chooses (the two agree to fp32 "
        f"rounding, so each gives its own run)")
    plan = make_plan(config)

    # 1. the base model
    say(f"[1/5] base model: {config.model}")
    base = str(pretrain_base(plan.base_spec, config.progress, build=config.build_base)) \
        if config.model == BUILT_IN_BASE else config.model

    # 2. warm-up SFT on one gold CoT per question
    say(f"[2/5] warm-up SFT: {plan.train_questions} questions x {plan.warmup_epochs} epochs; both branches "
        f"start from its last epoch")
    # Evaluated on dev once, at its last epoch: that epoch is where both branches start.
    warmup_steps = plan.warmup_epochs * -(-plan.train_questions // plan.sft_batch_size)
    sft(SFTConfig(**{**sft_options(config, plan), "max_seconds": None}, model=base, epochs=plan.warmup_epochs,
                  eval_every=warmup_steps, output=str(folder / "warmup")))
    # The branches start from the warm-up's last epoch, as the paper's ReFT starts from a fixed epoch,
    # not from its dev-best one, which is mostly noise on a few hundred dev questions and often early.
    last = latest_checkpoint(folder / "warmup")
    warm = str(last / "model")

    # 3. branches from the warm-up, the same compute each
    picks = run_branches(config, plan, folder, base, warm)
    picks["warm-up"] = replace(picks["warm-up"], label=f"its last epoch (step {TrainerState.read(last).step})")

    # 4. the held-out test: greedy top-1, majority vote (and reranking) over the same samples
    verifier_folder = str(folder / "verifier" / "best") if config.all_methods else None
    say(f"[5/5] test: {plan.test_questions} held-out questions greedy, the first {plan.vote_questions} also "
        f"vote@{plan.vote_samples}"
        + (f" and rerank@{plan.vote_samples}" if verifier_folder else ""))
    results = test_picks(config, plan, folder, picks, verifier_folder)

    # 5. the report
    summary = write_report(config, plan, folder, results, picks, base, round(time.perf_counter() - started, 1))
    release_lock(folder)
    return summary


def common_options(config: DemoConfig, plan: Plan) -> dict:
    """What every stage of the demo shares: the task, the seed, the dev evaluation, how it reports."""
    return dict(task="arithmetic", task_options=config.task_options, seed=config.seed, progress=config.progress,
                report_to=config.report_to, eval_limit=plan.dev_questions, eval_max_new_tokens=plan.max_new_tokens,
                eval_batch_size=EVAL_BATCH, max_seconds=config.max_seconds)


def sft_options(config: DemoConfig, plan: Plan) -> dict:
    """The warm-up's and continued SFT's settings, less the model, the steps and the folder."""
    batch = plan.sft_batch_size
    return dict(common_options(config, plan), max_train_examples=plan.train_questions, batch_size=batch,
                micro_batch_size=batch, learning_rate=config.sft_learning_rate, warmup_ratio=0.05, max_length=400)


def on_policy_options(config: DemoConfig, plan: Plan, warm: str) -> dict:
    """ReFT's and Online-ST's settings from the warm-up, less the steps, the lr and the folder."""
    return dict(common_options(config, plan), model=warm, max_train_examples=plan.train_questions,
                questions_per_step=min(config.questions_per_step, plan.train_questions),
                num_samples_per_question=config.num_samples_per_question, max_new_tokens=plan.max_new_tokens,
                micro_batch_size=16, eval_every=10)


@dataclass(frozen=True)
class Budgets:
    """Each branch's steps for ReFT's compute, and how often the SFT-like branches evaluate on dev."""

    rl: int
    sft: int
    online_st: int
    sft_eval_every: int


def budgets(config: DemoConfig, plan: Plan) -> Budgets:
    questions = min(config.questions_per_step, plan.train_questions)
    samples = config.num_samples_per_question
    rl_rows = rl_step_rows(questions, samples, PPO_EPOCHS)
    # Online-ST's step samples like ReFT's (1 pass), then trains by likelihood (forward + backward = 3)
    # on at most every sample and on the golds.
    online_rows = questions * samples * 4 + 3 * questions
    return Budgets(plan.rl_steps, equal_compute_steps(plan.rl_steps, rl_rows, 3 * plan.sft_batch_size),
                   equal_compute_steps(plan.rl_steps, rl_rows, online_rows),
                   max(1, 2 * plan.train_questions // plan.sft_batch_size))


def run_branches(config: DemoConfig, plan: Plan, folder: Path, base: str, warm: str) -> dict[str, Pick]:
    """ReFT and continued SFT from the warm-up (with --all-methods also Offline-ST, Online-ST and a
    verifier), each on the same compute; returns each method's pick on dev."""
    steps = budgets(config, plan)
    on_policy = on_policy_options(config, plan, warm)
    critic_warmup = plan.critic_warmup_steps if config.advantage_estimator in VALUE_HEAD_ESTIMATORS else 0
    reft_log = folder / "reft.log"
    say(f"[3/5] ReFT branch: {steps.rl} RL steps from the warm-up checkpoint"
        + (f", the first {critic_warmup} for the value head alone" if critic_warmup else "")
        + f"; it runs in a second process beside the SFT branch (its console: {reft_log})")
    reft = RLConfig(**{**on_policy, "progress": False}, max_steps=steps.rl, learning_rate=config.rl_learning_rate,
                    advantage_estimator=config.advantage_estimator,
                    value_head_learning_rate=config.value_head_learning_rate, critic_warmup_steps=critic_warmup,
                    temperature=config.rl_temperature, lam=config.lam, ppo_epochs=PPO_EPOCHS, output=str(folder / "reft"))
    say(f"[4/5] SFT branch: {steps.sft} steps of continued SFT from the same checkpoint (the same compute)")
    # The branches are independent: side by side, each on half the threads, they end sooner than one
    # after the other (training/side_by_side.py says why). Each is seeded and reads nothing the other
    # writes, so running them together changes none of their figures.
    with beside(rl, reft, reft_log):
        sft(SFTConfig(**{**sft_options(config, plan), "learning_rate": config.continued_sft_learning_rate},
                      model=warm, epochs=1000, max_steps=steps.sft, eval_every=steps.sft_eval_every,
                      output=str(folder / "sft")))
    reft_summary = json.loads((folder / "reft" / "summary.json").read_text())
    best = reft_summary["best_dev_accuracy"]
    say("ReFT branch: " + (f"best dev accuracy {best:.1%} at step {reft_summary['best_step']}" if best is not None
                           else "it ended before its first dev evaluation"))
    start = warm_up_start(folder)
    picks = {"warm-up": start, "SFT": pick(folder / "sft", start), "ReFT": pick(folder / "reft", start)}
    if not config.all_methods:
        return picks

    say(f"[4/5] Offline-ST: {plan.self_training_samples} samples per question from the warm-up, then "
        f"{steps.sft} SFT steps from the base model on the correct ones and the gold CoTs")
    sampling = self_training_sampling(plan)
    sft(OfflineSTConfig(**sft_options(config, plan), **sampling, model=base, sampler=warm, epochs=1000,
                        max_steps=steps.sft, eval_every=steps.sft_eval_every, output=str(folder / "offline-st")))
    say(f"[4/5] Online-ST: {steps.online_st} steps from the warm-up, NLL on its correct samples and the gold CoTs")
    online_st(OnlineSTConfig(**on_policy, max_steps=steps.online_st, learning_rate=config.sft_learning_rate,
                             output=str(folder / "online-st")))
    say("[4/5] verifier: a correctness classifier from the warm-up model, on the warm-up's samples")
    verifier(VerifierConfig(**{k: v for k, v in sft_options(config, plan).items() if k != "learning_rate"}, **sampling,
                            model=warm, sampler=warm, samples=str(folder / "offline-st" / "samples.jsonl"),
                            dev_samples_per_question=4, learning_rate=config.verifier_learning_rate,
                            epochs=plan.verifier_epochs, output=str(folder / "verifier")))
    picks.update({"Offline-ST": pick(folder / "offline-st"), "Online-ST": pick(folder / "online-st", start)})
    return picks


def self_training_sampling(plan: Plan) -> dict:
    """How Offline-ST and the verifier sample the warm-up's CoTs of the training questions."""
    return dict(num_samples=plan.self_training_samples, sample_max_new_tokens=plan.max_new_tokens, sample_batch_size=32)


def test_evaluation(config: DemoConfig, plan: Plan) -> dict:
    """How the demo reads the held-out test split (EvalConfig's fields, less the model and the folder)."""
    return dict(task="arithmetic", task_options=config.task_options, split="test", limit=plan.test_questions,
                max_new_tokens=plan.max_new_tokens, batch_size=EVAL_BATCH, seed=config.seed, progress=config.progress,
                report_to="jsonl")


def test_picks(config: DemoConfig, plan: Plan, folder: Path, picks: dict[str, Pick],
               verifier_folder: str | None) -> dict[str, dict]:
    """Each picked model's test figures; a model two methods stand for (a branch that kept its start)
    is evaluated once, under its first name."""
    first_name: dict[str, str] = {}
    for name, chosen in picks.items():
        first_name.setdefault(chosen.model, name)
    evaluated = evaluate_models({name: model for model, name in first_name.items()}, folder, test_evaluation(config, plan),
                                plan.vote_samples, verifier_folder, config.vote_temperature, plan.vote_questions)
    return {name: {**evaluated[first_name[chosen.model]], "dev": chosen.dev_accuracy, "chosen": chosen.label}
            for name, chosen in picks.items()}


def write_report(config: DemoConfig, plan: Plan, folder: Path, results: dict[str, dict], picks: dict[str, Pick],
                 base: str, seconds: float) -> dict:
    """summary.json, report.md, report.html (table, plots, example completions) and the console table."""
    k = plan.vote_samples
    voted = "" if plan.vote_questions == plan.test_questions else f" (first {plan.vote_questions})"
    headers = ["model", "test top-1", f"test vote@{k}{voted}", "dev top-1", "right, wrong steps"]
    rows = [[name, pct(r["top1"]), pct(r["vote"]), pct(r["dev"]), pct(r["wrong_steps"])] for name, r in results.items()]
    if config.all_methods:
        headers.insert(3, f"test rerank@{k}{voted}")
        for row, r in zip(rows, results.values()):
            row.insert(3, pct(r["rerank"]))
    gap, low, high = paired_difference(greedy_correct(results["ReFT"]), greedy_correct(results["SFT"]))
    sure = certainty(low, high)
    verdict = (f"ReFT minus continued SFT: {100 * gap:+.1f} points of test top-1 (95% interval {100 * low:+.1f} to "
               f"{100 * high:+.1f} over the same {plan.test_questions} questions: {sure}), each given the same compute "
               f"after the warm-up ({plan.rl_steps} RL steps)" + (" (--quick: a smoke run, no claim)" if config.quick else ""))
    plots = branch_plots(folder, {name: folder / run for name, run in
                                  [("warm-up", "warmup"), ("SFT", "sft"), ("ReFT", "reft"), ("Offline-ST", "offline-st"),
                                   ("Online-ST", "online-st")] if (folder / run / "metrics.jsonl").exists()})
    if config.all_methods:
        plots.insert(0, bar_chart(folder / "plots" / "methods.png", "test accuracy by method",
                                  {name: {"top-1": r["top1"], f"vote@{k}": r["vote"], f"rerank@{k}": r["rerank"]}
                                   for name, r in results.items()}))
    examples = {name: example_completions(Path(results[name]["greedy_samples"])) for name in ("SFT", "ReFT")}
    summary = {"results": results, "gap_top1": gap, "gap_interval": [low, high], "certainty": sure.split(":")[0],
               "seconds": seconds, "quick": config.quick, "base_model": base, "cpu_linear": chosen_path(),
               "verdict": verdict}
    write_atomically(folder / "summary.json", json.dumps(summary, indent=1))
    table = markdown_table(headers, rows)
    note = (f"dev top-1 on {plan.dev_questions} questions: the warm-up's at its last epoch; each branch's at "
            "its pick on dev among its start and its checkpoints ("
            + ", ".join(f"{name}: {chosen.label}" for name, chosen in picks.items() if name != "warm-up") + ")")
    (folder / "report.md").write_text(f"# reftune demo\n\n{verdict}.\n\n{table}\n\n{note}.\n\nWall time: {seconds} s.\n")
    report = write_html(folder / "report.html", "reftune demo: ReFT against SFT on arithmetic",
                        f"{verdict}. {note}. Wall time {seconds} s.", headers, rows, plots, examples,
                        config_to_yaml(config))
    print(f"\n{table}\n{note}.\n\n{verdict}.\nReport: {report}  (wall time {seconds} s)", flush=True)
    return summary


def greedy_correct(result: dict) -> list[bool]:
    """Whether each test question's greedy answer was right, in question order (the evaluation's
    samples file)."""
    rows = [json.loads(line) for line in Path(result["greedy_samples"]).read_text().splitlines() if line.strip()]
    return [row["correct"][0] for row in sorted(rows, key=lambda row: row["id"])]


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def say(message: str) -> None:
    print(message, flush=True)
