"""Do the paper's self-training baselines beat continued SFT on the demo's task once their settings are
chosen on dev? From finished demos (the seed folders `benchmarks/demo_gap.py` writes), on the demo's
compute after the warm-up:

- Online-ST from the warm-up, once per learning rate x sample weight;
- Offline-ST, SFT from the base on the warm-up's correct samples (8 per training question) and the gold
  CoTs, once per learning rate (the samples are drawn once and shared).

Each run picks its checkpoint on dev as the demo's branches do (Online-ST must beat its start, the
warm-up); per method, the setting whose pick scored best on dev is the one read on test (greedy top-1),
beside the demo's own continued SFT and ReFT on the same test questions:

    {"seeds": [{"seed", "sft", "reft", "online_st": {"runs": [{"learning_rate", "sample_weight", "dev",
      "pick"}, ...], "chosen": {...}, "test_top1", "wrong_steps"}, "offline_st": {same},
      "wrong_steps": {"sft", "reft"}}, ...],
     "mean": {"sft", "reft", "online_st", "offline_st"}}            (test top-1 in points)

    python benchmarks/self_training.py --demo-runs runs/demo-gap [--seeds 0] [--learning-rates 1e-3 3e-4]
                                      [--sample-weights 0.5 0.8] [--output runs/self-training]

Choices are made on dev only; test is read once per method and seed. wrong_steps: of a model's right
greedy test answers, the share whose stated arithmetic is wrong (right for the wrong reasons).
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path

from reftune import EvalConfig, evaluate
from reftune.config import DemoConfig, OfflineSTConfig, OnlineSTConfig
from reftune.stages.compare import right_for_wrong_reasons
from reftune.stages.demo import (Pick, budgets, make_plan, on_policy_options, pick, self_training_sampling,
                                 sft_options, test_evaluation, warm_up_start)
from reftune.stages.online_st import online_st
from reftune.stages.pretrain import pretrain_base
from reftune.stages.sft import sft


def test_reading(demo: DemoConfig, model: str, folder: Path) -> dict:
    """Greedy test top-1 in points, and the share of its right answers whose stated arithmetic is wrong."""
    evaluation = test_evaluation(demo, make_plan(demo))
    summary = evaluate(EvalConfig(**evaluation, model=model, output=str(folder)))
    samples = folder / f"{evaluation['split']}-samples.jsonl"
    return {"test_top1": round(100 * summary.top1_accuracy, 2), "wrong_steps": right_for_wrong_reasons(evaluation, samples)}


def best_on_dev(runs: list[dict]) -> dict:
    """The first run with the highest dev accuracy of its pick (ties keep the earlier setting)."""
    return max(runs, key=lambda run: run["dev"])


def online_st_runs(demo: DemoConfig, warm: str, start: Pick, folder: Path, rates: list[float],
                   weights: list[float]) -> tuple[list[dict], list[str]]:
    plan = make_plan(demo)
    steps = budgets(demo, plan)
    runs, models = [], []
    for rate, weight in itertools.product(rates, weights):
        run = folder / f"online-st-lr{rate:g}-w{weight:g}"
        online_st(OnlineSTConfig(**on_policy_options(demo, plan, warm), max_steps=steps.online_st, learning_rate=rate,
                                 sample_weight=weight, output=str(run)))
        chosen = pick(run, start)
        runs.append({"learning_rate": rate, "sample_weight": weight, "dev": chosen.dev_accuracy, "pick": chosen.label})
        models.append(chosen.model)
        print(json.dumps({"online_st": runs[-1]}), flush=True)
    return runs, models


def offline_st_runs(demo: DemoConfig, warm: str, folder: Path, rates: list[float]) -> tuple[list[dict], list[str]]:
    plan = make_plan(demo)
    steps = budgets(demo, plan)
    base = str(pretrain_base(plan.base_spec, show_progress=False))
    runs, models, samples = [], [], None
    for rate in rates:
        run = folder / f"offline-st-lr{rate:g}"
        sampling = self_training_sampling(plan) | ({"samples": samples} if samples else {"sampler": warm})
        sft(OfflineSTConfig(**{**sft_options(demo, plan), "learning_rate": rate}, **sampling, model=base, epochs=1000,
                            max_steps=steps.sft, eval_every=steps.sft_eval_every, output=str(run)))
        samples = samples or str(run / "samples.jsonl")
        chosen = pick(run)  # from the base, not the warm-up: no start to keep
        runs.append({"learning_rate": rate, "dev": chosen.dev_accuracy, "pick": chosen.label})
        models.append(chosen.model)
        print(json.dumps({"offline_st": runs[-1]}), flush=True)
    return runs, models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-runs", type=Path, required=True, help="benchmarks/demo_gap.py's output folder")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--learning-rates", nargs="+", type=float, default=[1e-3, 3e-4])
    parser.add_argument("--sample-weights", nargs="+", type=float, default=[0.5, 0.8])
    parser.add_argument("--output", type=Path, default=Path("runs/self-training"))
    parser.add_argument("--quick", action="store_true", help="on quick demos (a smoke run: no claim)")
    args = parser.parse_args()
    seeds = []
    for seed in args.seeds:
        demo = DemoConfig(seed=seed, quick=args.quick, progress=False, report_to="jsonl")
        demo_run, folder = args.demo_runs / f"seed-{seed}", args.output / f"seed-{seed}"
        results = json.loads((demo_run / "summary.json").read_text())["results"]
        start = warm_up_start(demo_run)
        warm = start.model
        row = {"seed": seed, "sft": round(100 * results["SFT"]["top1"], 2), "reft": round(100 * results["ReFT"]["top1"], 2),
               "wrong_steps": {"sft": results["SFT"]["wrong_steps"], "reft": results["ReFT"]["wrong_steps"]}}
        online, online_models = online_st_runs(demo, warm, start, folder, args.learning_rates, args.sample_weights)
        chosen = best_on_dev(online)
        row["online_st"] = {"runs": online, "chosen": chosen,
                            **test_reading(demo, online_models[online.index(chosen)], folder / "online-st-test")}
        offline, offline_models = offline_st_runs(demo, warm, folder, args.learning_rates)
        chosen = best_on_dev(offline)
        row["offline_st"] = {"runs": offline, "chosen": chosen,
                             **test_reading(demo, offline_models[offline.index(chosen)], folder / "offline-st-test")}
        seeds.append(row)
    mean = {key: round(statistics.mean(r[key] if key in ("sft", "reft") else r[key]["test_top1"] for r in seeds), 2)
            for key in ("sft", "reft", "online_st", "offline_st")}
    print(json.dumps({"seeds": seeds, "mean": mean}, indent=1))


if __name__ == "__main__":
    main()
