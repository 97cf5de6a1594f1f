"""Why is majority voting below greedy on the demo, and at what temperature and K does it help? On the
dev split only: for a finished demo run's three models (the warm-up's last epoch, continued SFT's and
ReFT's picks), greedy top-1, then K_max samples per question at each temperature, scored as vote@K
over the first K samples for each K (one draw serves every K).

    {"run", "dev_questions", "models": {name: {"greedy": top1, "sampled": {T: {"sample_accuracy",
     "no_answer_rate", "distinct_answers", "vote@K": ..., "any@K": ...}}}}, "pick": {"temperature", "k"}}

`pick` is the temperature with the best vote@K_max summed over the three models: what `reftune demo`
should vote at. distinct_answers: the mean number of different answers among a question's K_max
samples; any@K: some sample of the first K is right (what a perfect reranker would get).

    python benchmarks/voting.py --run runs/demo-gap/seed-0 [--temperatures 0.3 0.5 0.7 1.0] [--k 1 4 8 16]
                                [--verifier runs/verifier/best]

With --verifier, every sample is also scored by the verifier and rerank@K (the answer of the best
scored of the first K samples) is reported beside vote@K. With --own-verifiers, each model gets a
verifier of its own instead, trained as `reftune demo --all-methods` trains the warm-up's (from the
model, on 8 of its own samples per training question) and written under OUTPUT/verifier-<model>:
does a verifier that knows the reranked model's samples rerank them better than the warm-up's?
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from reftune import EvalConfig, VerifierConfig, evaluate, get_task, verifier
from reftune.config import DemoConfig
from reftune.scoring.selection import majority_vote, rerank
from reftune.stages.demo import make_plan, pick, self_training_sampling, sft_options, warm_up_start


def demo_models(run: Path) -> dict[str, str]:
    """The three models a demo run's table stands for, picked as the demo picks them (on dev)."""
    start = warm_up_start(run)
    return {"warm-up": start.model, "SFT": pick(run / "sft", start).model, "ReFT": pick(run / "reft", start).model}


def vote_figures(task, rows: list[dict], ks: list[int]) -> dict:
    """vote@K, any@K (and rerank@K when a verifier scored the samples) over the first K samples of each
    row, and what the samples look like."""
    figures = {"sample_accuracy": sum(sum(r["correct"]) for r in rows) / sum(len(r["correct"]) for r in rows),
               "no_answer_rate": sum(a is None for r in rows for a in r["answers"]) / sum(len(r["answers"]) for r in rows),
               "distinct_answers": sum(len({a for a in r["answers"] if a is not None}) for r in rows) / len(rows)}
    for k in ks:
        votes = [majority_vote(r["answers"][:k], task.is_correct) for r in rows]
        figures[f"vote@{k}"] = sum(v is not None and task.is_correct(v, r["gold"]) for v, r in zip(votes, rows)) / len(rows)
        figures[f"any@{k}"] = sum(any(r["correct"][:k]) for r in rows) / len(rows)
        if all("verifier_scores" in r for r in rows):
            picks = [rerank(r["answers"][:k], r["verifier_scores"][:k]) for r in rows]
            figures[f"rerank@{k}"] = sum(p is not None and task.is_correct(p, r["gold"]) for p, r in zip(picks, rows)) / len(rows)
    return {name: round(value, 4) for name, value in figures.items()}


def own_verifier(run: Path, model: str, folder: Path) -> str:
    """A verifier trained from `model` on its own samples of the training questions, with the settings
    `reftune demo --all-methods` gives the warm-up's verifier; returns its best checkpoint."""
    saved = yaml.safe_load((run / "config.yaml").read_text())
    demo = DemoConfig(**{key: saved[key] for key in ("seed", "task_options", "train_questions", "dev_questions",
                                                     "max_new_tokens", "self_training_samples", "quick")},
                      progress=False, report_to="jsonl")
    plan = make_plan(demo)
    options = {key: value for key, value in sft_options(demo, plan).items() if key != "learning_rate"}
    verifier(VerifierConfig(**options, **self_training_sampling(plan), model=model, sampler=model,
                            dev_samples_per_question=4, learning_rate=demo.verifier_learning_rate,
                            epochs=plan.verifier_epochs, output=str(folder)))
    return str(folder / "best")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished `reftune demo` folder")
    parser.add_argument("--temperatures", nargs="+", type=float, default=[0.3, 0.5, 0.7, 1.0])
    parser.add_argument("--k", nargs="+", type=int, default=[1, 4, 8, 16])
    parser.add_argument("--output", default=None, help="where the evaluations go (default: RUN/voting)")
    parser.add_argument("--verifier", help="a verifier folder (`reftune verifier`'s best/): adds rerank@K")
    parser.add_argument("--own-verifiers", action="store_true",
                        help="train each model a verifier on its own samples: adds rerank@K by it")
    args = parser.parse_args()
    if args.verifier and args.own_verifiers:
        parser.error("--verifier and --own-verifiers: give one (run twice to compare them)")
    run = Path(args.run)
    demo = yaml.safe_load((run / "config.yaml").read_text())
    output = Path(args.output or run / "voting")
    task = get_task("arithmetic")
    common = dict(task="arithmetic", task_options=demo["task_options"], split="dev", limit=demo["dev_questions"],
                  max_new_tokens=demo["max_new_tokens"], batch_size=32, seed=demo["seed"], progress=False,
                  report_to="jsonl")
    results, verifiers = {}, {}  # a branch that kept its start is the same model: one verifier
    for name, model in demo_models(run).items():
        slug = name.lower()
        if args.own_verifiers and model not in verifiers:
            verifiers[model] = own_verifier(run, model, output / f"verifier-{slug}")
        scorer = verifiers[model] if args.own_verifiers else args.verifier
        greedy = evaluate(EvalConfig(**common, model=model, output=str(output / f"{slug}-greedy")))
        sampled = {}
        for temperature in args.temperatures:
            folder = output / f"{slug}-t{temperature}"
            evaluate(EvalConfig(**common, model=model, temperature=temperature, num_samples=max(args.k),
                                mode="rerank" if scorer else "vote", verifier=scorer,
                                output=str(folder)))
            rows = [json.loads(line) for line in (folder / "dev-samples.jsonl").open()]
            sampled[str(temperature)] = vote_figures(task, rows, args.k)
        results[name] = {"greedy": greedy.top1_accuracy, "sampled": sampled}
    best_k = f"vote@{max(args.k)}"
    chosen = max(args.temperatures, key=lambda t: sum(r["sampled"][str(t)][best_k] for r in results.values()))
    print(json.dumps({"run": str(run), "dev_questions": demo["dev_questions"], "models": results,
                      "pick": {"temperature": chosen, "k": max(args.k)}}, indent=1))


if __name__ == "__main__":
    main()
