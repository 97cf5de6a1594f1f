"""Does ReFT make a real pretrained model better on a real benchmark? SmolLM2-135M on SVAMP, trained on
the ReFT authors' own file (P-CoT programs, or N-CoT rationales with --style nl), per seed:

1. warm-up SFT (configs/sft/warmup-smollm2-svamp-STYLE.yaml) on the training problems less a fixed dev
   slice (the last 300);
2. from the warm-up's last checkpoint, ReFT (configs/rl/reft-smollm2-svamp-STYLE.yaml: PPO with the
   value head, k1 KL in the reward, the authors' loss aggregation) and continued SFT
   (configs/sft/continued-sft-smollm2-svamp-STYLE.yaml) given the same compute, counted in forward-pass
   rows as `reftune demo` counts it;
3. each branch picked on dev among its start and its own checkpoints (the demo's rule);
4. greedy top-1 and vote@8 on all 1,000 SVAMP test questions for the warm-up and both picks.

It prints, and writes to OUTPUT/STYLE/results.json (and --save PATH), test accuracy in points:

    {"runs": [{"seed", "warmup": {"top1", "vote", "dev", "pick", "right_with_wrong_steps"}, "sft": {...},
               "reft": {...}, "gap_top1", "gap_vote", "gap_interval", "certainty", "training_seconds"}, ...],
     "mean": {...}, "std": {...}, "min": {...}, "targets": {...}, "settings": {...}}    gap = reft - sft

It runs for hours, so every part resumes: `--resume` finds each stage's folder and continues it (the
stage's own --resume: the steps after its last checkpoint equal an uninterrupted run) or skips it when
finished, and reads an evaluation already written instead of redoing it. Stop it with Ctrl-C (the stage
in hand checkpoints first) or a kill, and continue later, from another session too:
OUTPUT/STYLE/status.json says which stages are done, which one was running, and the command that
continues. docs/real-model.md has the commands, what each stage costs on 2 cores, and the results.

    python benchmarks/real_model.py [--style python|nl] [--seeds 0 1] [--output runs/real-model]
        [--data FILE] [--test-data FILE] [--model smollm2-135m] [--quick] [--resume] [--save PATH]

Departures from the paper (Galactica-125M: SFT 35.6 -> ReFT 39.4 on SVAMP P-CoT): a CPU budget (the
presets' headers say how much and why), checkpoints picked on a dev slice rather than on test, and the
SFT baseline is continued SFT on ReFT's compute rather than 40 epochs.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from reftune.config import EvalConfig, RLConfig, SFTConfig
from reftune.config.options import config_from_yaml_text, read_yaml_options
from reftune.errors import ReftuneError
from reftune.scoring.selection import certainty, paired_difference
from reftune.stages.compare import evaluation_folder, right_for_wrong_reasons
from reftune.stages.demo import Pick, equal_compute_steps, greedy_correct, pick, rl_step_rows, warm_up_start
from reftune.stages.evaluate import evaluate
from reftune.stages.rl import rl
from reftune.stages.sft import sft
from reftune.training.checkpoint import TrainerState, latest_checkpoint
from reftune.training.folders import CONFIG_FILE, LOCK_FILE, RUN_RECORD, hold_lock, write_atomically
from reftune.training.run import changed_options

ROOT = Path(__file__).resolve().parents[1]
# The published small-model SVAMP P-CoT figures this run is held against (RECIPE: Galactica-125M).
PAPER_SFT, PAPER_REFT = 35.6, 39.4
VOTE_SAMPLES = 8
# What --quick shrinks: every stage's data and steps, so a run takes minutes and proves nothing.
QUICK = dict(train_examples=32, dev_questions=8, test_questions=16, warmup_steps=4, sft_batch=8, rl_steps=2,
             questions_per_step=4, max_new_tokens=96, vote_samples=4)
# Settings every stage must share, or the dev picks and the compute count compare unlike things.
SHARED_KEYS = ("task", "style", "data", "train_split", "dev_split", "eval_limit", "eval_max_new_tokens",
               "prompt_format", "max_train_examples")


def preset_paths(style: str) -> dict[str, Path]:
    return {"warmup": ROOT / "configs" / "sft" / f"warmup-smollm2-svamp-{style}.yaml",
            "reft": ROOT / "configs" / "rl" / f"reft-smollm2-svamp-{style}.yaml",
            "sft": ROOT / "configs" / "sft" / f"continued-sft-smollm2-svamp-{style}.yaml"}


@dataclass(frozen=True)
class Plan:
    """Each stage's options (its config's fields; the seed, the folder and, for the branches, the model
    are set per run), and the test evaluation."""

    warmup: dict
    reft: dict
    sft: dict
    evaluation: dict
    vote_samples: int
    vote_temperature: float

    def settings(self) -> dict:
        """What the results JSON records about the run's budget."""
        return {"warmup_epochs": self.warmup.get("epochs"), "warmup_max_steps": self.warmup.get("max_steps"),
                "rl_steps": self.reft["max_steps"], "questions_per_step": self.reft["questions_per_step"],
                "continued_sft_steps": self.sft["max_steps"], "sft_batch_size": self.sft["batch_size"],
                "rl_learning_rate": self.reft["learning_rate"], "sft_learning_rate": self.sft["learning_rate"],
                "vote_samples": self.vote_samples, "vote_temperature": self.vote_temperature,
                "test_questions": self.evaluation["limit"] or "all"}


def make_plan(args) -> Plan:
    """The stages' options from the presets, with only the data paths, the model and (--quick) the sizes
    changed; refuses presets that disagree on what the stages must share, or whose continued-SFT budget
    is not ReFT's compute."""
    paths = preset_paths(args.style)
    presets = {name: read_yaml_options(path, RLConfig if name == "reft" else SFTConfig) for name, path in paths.items()}
    data = str(args.data or presets["warmup"].get("data") or "")
    test = str(args.test_data or svamp_test_set_next_to(data))
    check_data(data, test)
    for name, options in presets.items():
        options.update(data=data)
        options.pop("output", None)  # each run's folder is OUTPUT/STYLE/seed-N/STAGE
        if name != "warmup":
            options.pop("model", None)  # the branches start from the warm-up run of their seed
    if args.model:
        presets["warmup"]["model"] = args.model
    if args.quick:
        presets = quick_sizes(presets)
    check_shared(presets, paths)
    check_budget(presets, paths, derive=args.quick)
    evaluation = dict(task=presets["warmup"]["task"], style=args.style, data=test, split="test",
                      limit=QUICK["test_questions"] if args.quick else None,
                      prompt_format=presets["warmup"].get("prompt_format", "auto"),
                      max_new_tokens=presets["reft"]["max_new_tokens"], report_to="jsonl",
                      batch_size=16)  # 128 rows when voting over 8: about 2 GB of SmolLM2's KV cache
    return Plan(presets["warmup"], presets["reft"], presets["sft"], evaluation,
                QUICK["vote_samples"] if args.quick else VOTE_SAMPLES, args.vote_temperature)


def quick_sizes(presets: dict) -> dict:
    """The smoke run's sizes over the presets' own settings."""
    small = dict(max_train_examples=QUICK["train_examples"], eval_limit=QUICK["dev_questions"],
                 eval_max_new_tokens=QUICK["max_new_tokens"])
    sft_small = dict(small, batch_size=QUICK["sft_batch"], micro_batch_size=QUICK["sft_batch"])
    return {"warmup": {**presets["warmup"], **sft_small, "max_steps": QUICK["warmup_steps"]},
            "reft": {**presets["reft"], **small, "max_steps": QUICK["rl_steps"], "eval_every": 1,
                     "questions_per_step": QUICK["questions_per_step"], "micro_batch_size": QUICK["questions_per_step"],
                     "max_new_tokens": QUICK["max_new_tokens"]},
            "sft": {**presets["sft"], **sft_small}}


def check_shared(presets: dict, paths: dict) -> None:
    for key in SHARED_KEYS:
        values = {name: options.get(key) for name, options in presets.items()}
        if len(set(map(str, values.values()))) > 1:
            listed = ", ".join(f"{paths[name].name}: {value!r}" for name, value in values.items())
            raise ReftuneError(f"the presets disagree on {key} ({listed}): the three stages must share it, "
                               f"or the dev picks compare unlike runs; make them equal")


def sft_budget(reft: dict, sft_batch_size: int) -> tuple[int, int]:
    """(steps, eval_every) of continued SFT: the steps that cost what ReFT's steps cost in forward-pass
    rows, evaluated on dev at the same points of that compute as ReFT.

    >>> sft_budget({"max_steps": 100, "eval_every": 25, "questions_per_step": 16, "num_samples_per_question": 1,
    ...             "ppo_epochs": 2}, 16)
    (267, 67)
    """
    rows = rl_step_rows(reft["questions_per_step"], reft.get("num_samples_per_question", 1),
                        reft.get("ppo_epochs", RLConfig.ppo_epochs))
    steps = equal_compute_steps(reft["max_steps"], rows, 3 * sft_batch_size)
    return steps, max(1, round(steps * reft["eval_every"] / reft["max_steps"]))


def check_budget(presets: dict, paths: dict, derive: bool) -> None:
    """The continued-SFT preset must hold ReFT's compute (derived instead for --quick's sizes)."""
    if "max_steps" not in presets["reft"] or "eval_every" not in presets["reft"]:
        raise ReftuneError(f"{paths['reft']} must set max_steps and eval_every: they fix the budget both branches get")
    steps, every = sft_budget(presets["reft"], presets["sft"]["batch_size"])
    if derive:
        presets["sft"].update(max_steps=steps, eval_every=every)
    elif (presets["sft"].get("max_steps"), presets["sft"].get("eval_every")) != (steps, every):
        raise ReftuneError(f"{paths['sft']} has max_steps {presets['sft'].get('max_steps')} and eval_every "
                           f"{presets['sft'].get('eval_every')}, but ReFT's {presets['reft']['max_steps']} steps cost "
                           f"{steps} continued-SFT steps (evaluated every {every}): set those two values there")


def svamp_test_set_next_to(data: str) -> Path:
    """The test set beside the training file, as the authors' repository keeps them."""
    return Path(data).parent / "svamp_test_set.json"


def check_data(train: str, test: str) -> None:
    for what, path, flag in (("training", train, "--data"), ("test", test, "--test-data")):
        if not path or not Path(path).is_file():
            raise ReftuneError(f"the {what} file {path or '(none)'} does not exist: get the ReFT authors' SVAMP files "
                               f"(github.com/lqtrung1998/mwp_ReFT, data/) or pass {flag} PATH")


class Interrupted(Exception):
    """A stage stopped before its end (Ctrl-C): the run is to be continued with --resume."""


class Status:
    """Progress for the console (one line per stage start and finish, with wall time) and for a later
    session (status.json in the style's folder: each stage's state, folder and seconds, the stage in
    hand, and the command that continues the run)."""

    def __init__(self, folder: Path, command: str):
        self.path, self.command = folder / "status.json", command
        earlier = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.stages: dict[str, dict] = earlier.get("stages", {})
        self.state, self.current = "running", None
        self.write()

    def write(self) -> None:
        write_atomically(self.path, json.dumps({"state": self.state, "current": self.current, "pid": os.getpid(),
                                                "updated": now(), "continue_with": self.command,
                                                "stages": self.stages}, indent=1))

    def start(self, name: str, folder: Path, what: str) -> float:
        self.current = name
        self.stages[name] = {**self.stages.get(name, {}), "state": "running", "folder": str(folder), "started": now()}
        self.write()
        say(f"{name}: {what} ({folder})")
        return time.perf_counter()

    def done(self, name: str, started: float, state: str = "finished", note: str = "") -> None:
        seconds = round(time.perf_counter() - started, 1)
        entry = self.stages.setdefault(name, {})
        entry.update(state=state, ended=now(), seconds=round(entry.get("seconds", 0) + seconds, 1))
        self.current = None if state == "finished" else name
        self.write()
        say(f"{name}: {state} in {seconds:.0f} s{note}")

    def skip(self, name: str, folder: Path, why: str) -> None:
        self.stages[name] = {**self.stages.get(name, {}), "state": "finished", "folder": str(folder)}
        self.write()
        say(f"{name}: {why}, skipped ({folder})")

    def end(self, state: str) -> None:
        """The run's end: finished, interrupted or failed (so is the stage in hand, if any)."""
        if self.current and self.stages[self.current].get("state") == "running":
            self.stages[self.current]["state"] = state
        self.state = state
        self.write()


def now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def say(message: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", flush=True)


def finished(folder: Path) -> bool:
    """Whether a training stage ran to its end: a summary that no Ctrl-C cut short."""
    summary = folder / "summary.json"
    return summary.exists() and not str(json.loads(summary.read_text()).get("stopped") or "").startswith("interrupted")


def train_stage(status: Status, name: str, what: str, stage, config_type: type, options: dict, folder: Path) -> None:
    """Run one training stage into `folder`: skipped when finished (with these settings), continued
    with the stage's own resume when a run was started there, else started. A Ctrl-C (the stage
    checkpoints first) ends the script, to be continued later."""
    started_there = (folder / RUN_RECORD).exists()  # a folder made but never started holds nothing to continue
    config = config_type(**options, resume=started_there, output=str(folder))
    if finished(folder):
        refuse_other_settings(folder, config)
        status.skip(name, folder, "finished earlier")
        return
    started = status.start(name, folder, what)
    summary = stage(config)
    if str(summary.stopped or "").startswith("interrupted"):
        status.done(name, started, "interrupted")
        raise Interrupted(name)
    status.done(name, started, note=f" ({summary.steps} steps, best dev {fraction(summary.best_dev_accuracy)})")


def refuse_other_settings(folder: Path, config) -> None:
    """A finished stage stands in the results only if it ran with the settings asked for now (an
    edited preset would otherwise mix two budgets in one table)."""
    changes = changed_options(config_from_yaml_text((folder / CONFIG_FILE).read_text()), config)
    if changes:
        listed = "; ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in changes.items())
        raise ReftuneError(f"{folder} finished with other settings than these ({listed}): restore them, or "
                           f"choose another --output to run with the new ones")


def fraction(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def scored_on_test(status: Status, plan: Plan, seed_folder: Path, seed: int, name: str, model: str, kind: str,
                    progress: bool) -> float:
    """One test evaluation of `model`, greedy (top-1) or "sampled" (vote): its accuracy, read when an
    earlier run wrote it with these settings, else evaluated (into a folder an interrupted evaluation
    left, cleared first)."""
    folder = evaluation_folder(seed_folder, name, kind)
    label = f"{seed_folder.name}/test-{folder.name}"
    options = dict(plan.evaluation, model=model, seed=seed, progress=progress, output=str(folder))
    if kind == "sampled":
        options.update(mode="vote", num_samples=plan.vote_samples, temperature=plan.vote_temperature)
    if (folder / "summary.json").exists():
        check_same_evaluation(folder, options)
        status.skip(label, folder, "evaluated earlier")
        return headline(json.loads((folder / "summary.json").read_text()))
    if folder.exists():
        shutil.rmtree(folder)  # an evaluation cut short: its samples, if any, are partial
    questions = plan.evaluation["limit"] or "all"
    started = status.start(label, folder, f"{name}, {kind} on {questions} test questions")
    accuracy = headline(evaluate(EvalConfig(**options)).as_json())
    status.done(label, started, note=f" ({'top-1' if kind == 'greedy' else f'vote@{plan.vote_samples}'} "
                                     f"{fraction(accuracy)})")
    return accuracy


def headline(summary: dict) -> float:
    """An evaluation's accuracy: top-1 when greedy, vote@K when sampled."""
    return summary.get("top1_accuracy", summary.get(f"vote@{summary['samples_per_question']}_accuracy"))


def check_same_evaluation(folder: Path, options: dict) -> None:
    """Refuse to read an evaluation made with other settings (another pick, another test file)."""
    saved = config_from_yaml_text((folder / CONFIG_FILE).read_text())
    changed = [f"{key}: {saved.get(key)!r} -> {value!r}" for key, value in options.items()
               if key not in ("output", "progress") and saved.get(key) != value]
    if changed:
        raise ReftuneError(f"{folder} holds an evaluation with other settings ({'; '.join(changed)}): delete that "
                           f"folder to evaluate again with these")


def figures_on_test(status: Status, plan: Plan, seed_folder: Path, seed: int, picks: dict[str, Pick],
                 progress: bool) -> dict[str, dict]:
    """Each pick's test figures; a model two methods stand for (a branch that kept its start) is
    evaluated once, under its first name, as the demo does."""
    first_name: dict[str, str] = {}
    for name, chosen in picks.items():
        first_name.setdefault(chosen.model, name)
    figures = {}
    for model, name in first_name.items():
        top1 = scored_on_test(status, plan, seed_folder, seed, name, model, "greedy", progress)
        vote = scored_on_test(status, plan, seed_folder, seed, name, model, "sampled", progress)
        samples = evaluation_folder(seed_folder, name, "greedy") / "test-samples.jsonl"
        figures[model] = {"top1": top1, "vote": vote,
                          "wrong_steps": right_for_wrong_reasons(plan.evaluation, samples), "greedy_samples": str(samples)}
    return {name: {**figures[chosen.model], "dev": chosen.dev_accuracy, "pick": chosen.label}
            for name, chosen in picks.items()}


def run_seed(status: Status, plan: Plan, folder: Path, seed: int, progress: bool) -> dict:
    """One seed: the warm-up, both branches from its last checkpoint, each pick on test; its row."""
    options = dict(seed=seed, progress=progress)
    train_stage(status, f"{folder.name}/warmup", "warm-up SFT", sft, SFTConfig, {**plan.warmup, **options},
                folder / "warmup")
    # Both branches start from the warm-up's last epoch, as the paper's ReFT starts from a fixed epoch
    # and as the demo does: its dev-best epoch is mostly noise on a few hundred dev questions.
    start = warm_up_start(folder)
    rl_options = {**plan.reft, **options, "model": start.model}
    train_stage(status, f"{folder.name}/reft", f"ReFT, {plan.reft['max_steps']} RL steps from the warm-up", rl,
                RLConfig, rl_options, folder / "reft")
    train_stage(status, f"{folder.name}/sft", f"continued SFT, {plan.sft['max_steps']} steps (ReFT's compute)", sft,
                SFTConfig, {**plan.sft, **options, "model": start.model}, folder / "sft")
    last_step = TrainerState.read(latest_checkpoint(folder / "warmup")).step
    picks = {"warm-up": replace(start, label=f"its last epoch (step {last_step})"),
             "SFT": pick(folder / "sft", start), "ReFT": pick(folder / "reft", start)}
    return seed_row(seed, figures_on_test(status, plan, folder, seed, picks, progress), folder)


def points(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 2)


def seed_row(seed: int, results: dict[str, dict], folder: Path) -> dict:
    """A seed's figures in points, with the paired 95% interval of ReFT - SFT over the same questions."""
    row: dict = {"seed": seed}
    for key, name in (("warmup", "warm-up"), ("sft", "SFT"), ("reft", "ReFT")):
        result = results[name]
        row[key] = {"top1": points(result["top1"]), "vote": points(result["vote"]), "dev": points(result["dev"]),
                    "pick": result["pick"], "right_with_wrong_steps": points(result["wrong_steps"])}
    gap, low, high = paired_difference(greedy_correct(results["ReFT"]), greedy_correct(results["SFT"]))
    row.update(gap_top1=points(gap), gap_vote=round(row["reft"]["vote"] - row["sft"]["vote"], 2),
               gap_interval=[points(low), points(high)], certainty=certainty(low, high).split(":")[0],
               training_seconds={stage: json.loads((folder / stage / "summary.json").read_text())["seconds"]
                                 for stage in ("warmup", "reft", "sft")})
    return row


FIGURES = {"warmup_top1": ("warmup", "top1"), "sft_top1": ("sft", "top1"), "reft_top1": ("reft", "top1"),
           "warmup_vote": ("warmup", "vote"), "sft_vote": ("sft", "vote"), "reft_vote": ("reft", "vote"),
           "gap_top1": ("gap_top1",), "gap_vote": ("gap_vote",)}


def figure(row: dict, path: tuple[str, ...]) -> float:
    for key in path:
        row = row[key]
    return row


def spread(rows: list[dict]) -> dict:
    """Mean, population std and minimum over seeds of each figure, in points."""
    values = {name: [figure(row, path) for row in rows] for name, path in FIGURES.items()}
    return {"mean": {name: round(statistics.mean(v), 2) for name, v in values.items()},
            "std": {name: round(statistics.pstdev(v), 2) for name, v in values.items()},
            "min": {name: round(min(v), 2) for name, v in values.items()}}


def targets(mean: dict, style: str, quick: bool) -> dict:
    """The run against the paper's small-model SVAMP P-CoT figures (Galactica-125M)."""
    gap = round(PAPER_REFT - PAPER_SFT, 1)
    verdict = {"paper_galactica_125m": {"sft": PAPER_SFT, "reft": PAPER_REFT, "gap": gap},
               f"mean_gap_top1_at_least_{gap}": mean["gap_top1"] >= gap,
               f"mean_reft_top1_at_least_{PAPER_REFT}": mean["reft_top1"] >= PAPER_REFT}
    if quick:
        verdict["note"] = "--quick: a smoke run, no claim"
    elif style != "python":
        verdict["note"] = "the paper's small-model figures are for P-CoT; N-CoT is compared against them for scale only"
    return verdict


def results_json(args, plan: Plan, rows: list[dict]) -> dict:
    spreads = spread(rows)
    return {"date": datetime.date.today().isoformat(), "model": plan.warmup["model"], "style": args.style,
            "quick": args.quick, "data": {"train": plan.warmup["data"], "test": plan.evaluation["data"],
                                          "train_split": plan.warmup["train_split"], "dev_split": plan.warmup["dev_split"]},
            "presets": {name: str(path.relative_to(ROOT)) for name, path in preset_paths(args.style).items()},
            "settings": plan.settings(), "runs": rows, **spreads, "targets": targets(spreads["mean"], args.style, args.quick)}


def prepare_folder(folder: Path, resume: bool) -> None:
    """A fresh run takes an empty folder only; --resume continues whatever is there. Either holds the
    folder for this process: a second one would clear evaluations the first is writing."""
    held = sorted(p.name for p in folder.iterdir() if p.name != LOCK_FILE) if folder.is_dir() else []
    if held and not resume:
        raise ReftuneError(f"{folder} already holds a run ({', '.join(held[:4])}): add --resume to continue it, "
                           f"or choose another --output")
    if resume and not held:
        say(f"--resume: nothing in {folder} yet; starting from the beginning")
    folder.mkdir(parents=True, exist_ok=True)
    hold_lock(folder)


def continue_command(argv: list[str]) -> str:
    """The command that continues this run: the one given, with --resume."""
    return shlex.join(["python", "benchmarks/real_model.py", *argv, *([] if "--resume" in argv else ["--resume"])])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", choices=["python", "nl"], default="python", help="P-CoT programs or N-CoT rationales")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--output", default="runs/real-model", help="runs go to OUTPUT/STYLE/seed-N/")
    parser.add_argument("--data", help="the training file (default: the warm-up preset's data)")
    parser.add_argument("--test-data", help="the test file (default: svamp_test_set.json beside the training file)")
    parser.add_argument("--model", help="the model the warm-up starts from (default: the preset's, smollm2-135m)")
    parser.add_argument("--vote-temperature", type=float, default=1.0, help="sampling temperature of vote@8 (the paper's)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: a few questions and steps, minutes, no claim")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output where it stopped")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars")
    parser.add_argument("--save", help="also write the JSON to this file")
    args = parser.parse_args(argv)
    if args.vote_temperature <= 0:
        parser.error(f"--vote-temperature must be > 0 to draw different samples, got {args.vote_temperature}")
    return args


def run_all(args, plan: Plan, folder: Path, status: Status) -> None:
    """Every seed, then the results JSON (in the style's folder, and at --save)."""
    rows = []
    for seed in args.seeds:
        rows.append(run_seed(status, plan, folder / f"seed-{seed}", seed, args.progress))
        say(f"seed-{seed}: " + json.dumps(rows[-1]))
    text = json.dumps(results_json(args, plan, rows), indent=1)
    write_atomically(folder / "results.json", text + "\n")
    if args.save:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save).write_text(text + "\n")
    print(text, flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    folder = Path(args.output) / args.style
    command, status = continue_command(argv), None
    try:
        plan = make_plan(args)
        prepare_folder(folder, args.resume)
        status = Status(folder, command)
        run_all(args, plan, folder, status)
    except (Interrupted, KeyboardInterrupt):
        if status:
            status.end("interrupted")
        print(f"\nreal_model: stopped; finished stages are kept. Continue with:\n  {command}", file=sys.stderr, flush=True)
        return 130
    except ReftuneError as exc:
        if status:
            status.end("failed")
        print(f"real_model: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except Exception:
        if status:  # a later session must not read a crashed run as one still running
            status.end("failed")
        raise
    status.end("finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
