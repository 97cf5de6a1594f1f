"""Which RL estimator wins on the demo's task? The demo's RL branch, from the same warm-up, once per
algorithm preset (the paper's PPO and the group family), each with its preset's algorithm settings and
the demo's learning rate and budget; each run's checkpoint is picked on dev, then scored on test:

    {"runs": [{"algorithm", "seed", "dev", "pick", "test_top1", "test_vote", "wrong_steps"}, ...],
     "mean": {algorithm: {"test_top1", "test_vote"}}}

    python benchmarks/algorithms.py [--seeds 0 1 2] [--rl-steps 60] [--output runs/algorithms]
                                    [--demo-runs runs/demo-gap] [--reuse]

--demo-runs takes the folder `benchmarks/demo_gap.py` wrote (seed-N/ per seed): its warm-ups are used
instead of training them again, and its ReFT branch, which is the paper's PPO with these settings,
stands for "ppo (the paper)", or for "ppo + critic warm-up" when the demo warmed its value head up first
(`reftune demo --critic-warmup-steps`, the demo's default since it was chosen on dev).
--reuse reads a variant's finished run and its test evaluation from --output instead of running them
again (each is deterministic on one machine).

Choices are made on dev only; test is read once per picked model.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import yaml

from reftune.config import DemoConfig, RLConfig, SFTConfig
from reftune.stages.compare import evaluate_models, evaluation_folder, right_for_wrong_reasons
from reftune.stages.demo import (PPO_EPOCHS, Pick, make_plan, on_policy_options, pick, sft_options, test_evaluation,
                                 warm_up_start)
from reftune.stages.pretrain import pretrain_base
from reftune.stages.rl import rl
from reftune.stages.sft import sft

PRESETS = Path(__file__).resolve().parents[1] / "configs" / "rl"
# name -> (its preset in configs/rl, options beyond the preset)
ALGORITHMS = {"ppo (the paper)": (None, {}),
              "ppo + critic warm-up": (None, {"critic_warmup_steps": DemoConfig.critic_warmup_steps}),
              "grpo": ("grpo", {}), "dr_grpo": ("dr-grpo", {}), "dapo": ("dapo", {}), "rloo": ("rloo", {}),
              "reinforce++-baseline": ("reinforce-pp-baseline", {})}
# What makes each preset its algorithm; its sizes and learning rate are for 7B models on GPUs, so the
# demo's are kept.
ALGORITHM_KEYS = ("advantage_estimator", "loss_aggregation", "clip_range_high", "dual_clip", "importance_sampling",
                  "dynamic_sampling", "max_dynamic_sampling_rounds", "mask_truncated", "kl_in", "kl_estimator",
                  "kl_coef", "whiten_advantages")


def algorithm_options(name: str | None) -> dict:
    if name is None:
        return {}
    preset = yaml.safe_load((PRESETS / f"{name}-gsm8k-python.yaml").read_text())
    return {key: preset[key] for key in ALGORITHM_KEYS if key in preset}


def evaluated(run: Path, name: str, model: str, evaluation: dict, vote_samples: int) -> dict | None:
    """The test figures of an earlier evaluation of `model` in `run`, as evaluate_models gives them,
    or None when there is none."""
    greedy, sampled = (evaluation_folder(run, name, kind) / "summary.json" for kind in ("greedy", "sampled"))
    if not (greedy.exists() and sampled.exists()):
        return None
    greedy, sampled = json.loads(greedy.read_text()), json.loads(sampled.read_text())
    if greedy["model"] != model or sampled["model"] != model:
        return None
    samples = evaluation_folder(run, name, "greedy") / f"{evaluation['split']}-samples.jsonl"
    return {"top1": greedy["top1_accuracy"], "vote": sampled[f"vote@{vote_samples}_accuracy"],
            "wrong_steps": right_for_wrong_reasons(evaluation, samples)}


def warm_up(demo: DemoConfig, folder: Path) -> tuple[str, Pick]:
    """The demo's base and warm-up for one seed; returns the warm-up's last model and its dev pick."""
    plan = make_plan(demo)
    base = str(pretrain_base(plan.base_spec, show_progress=False))
    sft(SFTConfig(**sft_options(demo, plan), model=base, epochs=plan.warmup_epochs, output=str(folder / "warmup")))
    start = warm_up_start(folder)
    return start.model, start


def from_demo(demo_run: Path, rl_steps: int) -> tuple[str, Pick, dict]:
    """A finished demo's warm-up (its last model and dev pick) and its ReFT row in this script's shape."""
    summary = json.loads((demo_run / "summary.json").read_text())
    config = yaml.safe_load((demo_run / "config.yaml").read_text())
    if config["rl_steps"] != rl_steps:
        raise SystemExit(f"{demo_run} ran {config['rl_steps']} RL steps, not {rl_steps}")
    reft = summary["results"]["ReFT"]
    row = {"algorithm": "ppo + critic warm-up" if config.get("critic_warmup_steps") else "ppo (the paper)",
           "dev": reft["dev"], "pick": reft["chosen"], "test_top1": round(100 * reft["top1"], 2),
           "test_vote": round(100 * reft["vote"], 2), "wrong_steps": reft["wrong_steps"]}
    start = warm_up_start(demo_run)
    return start.model, start, row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--rl-steps", type=int, default=DemoConfig.rl_steps)
    parser.add_argument("--output", default="runs/algorithms")
    parser.add_argument("--demo-runs", type=Path, help="benchmarks/demo_gap.py's output: reuse its warm-ups and PPO")
    parser.add_argument("--quick", action="store_true", help="on quick demos (a smoke run: no claim)")
    parser.add_argument("--reuse", action="store_true", help="read finished variant runs instead of rerunning them")
    args = parser.parse_args()
    runs = []
    for seed in args.seeds:
        demo = DemoConfig(seed=seed, rl_steps=args.rl_steps, quick=args.quick, progress=False, report_to="jsonl")
        plan = make_plan(demo)
        folder = Path(args.output) / f"seed-{seed}"
        if args.demo_runs:
            warm, start, ppo_row = from_demo(args.demo_runs / f"seed-{seed}", args.rl_steps)
        else:
            (warm, start), ppo_row = warm_up(demo, folder), None
        for algorithm, (preset, extra) in ALGORITHMS.items():
            if ppo_row is not None and ppo_row["algorithm"] == algorithm:
                runs.append({"algorithm": algorithm, "seed": seed, **ppo_row})
                print(json.dumps(runs[-1]), flush=True)
                continue
            run = folder / algorithm.split(" (")[0].replace(" + ", "-").replace(" ", "-")
            if not (args.reuse and (run / "summary.json").exists()):
                rl(RLConfig(**on_policy_options(demo, plan, warm), max_steps=plan.rl_steps,
                            learning_rate=demo.rl_learning_rate, value_head_learning_rate=demo.value_head_learning_rate,
                            ppo_epochs=PPO_EPOCHS, output=str(run), **algorithm_options(preset), **extra))
            chosen = pick(run, start)
            evaluation = test_evaluation(demo, plan)
            scores = args.reuse and evaluated(run, algorithm, chosen.model, evaluation, plan.vote_samples)
            if not scores:
                [scores] = evaluate_models({algorithm: chosen.model}, run, evaluation, plan.vote_samples, None,
                                           demo.vote_temperature).values()
            runs.append({"algorithm": algorithm, "seed": seed, "dev": chosen.dev_accuracy, "pick": chosen.label,
                         "test_top1": round(100 * scores["top1"], 2), "test_vote": round(100 * scores["vote"], 2),
                         "wrong_steps": scores["wrong_steps"]})
            print(json.dumps(runs[-1]), flush=True)
    names = dict.fromkeys(r["algorithm"] for r in runs)
    mean = {name: {key: round(statistics.mean(r[key] for r in runs if r["algorithm"] == name), 2)
                   for key in ("test_top1", "test_vote")} for name in names}
    print(json.dumps({"runs": runs, "mean": mean}, indent=1))


if __name__ == "__main__":
    main()
