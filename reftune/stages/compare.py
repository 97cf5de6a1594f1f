"""`reftune compare`: the paper's table for a user's runs. Every model is evaluated on the same split
with the same sampling: greedy top-1, majority vote over K samples and, given a verifier, reranking
of the same K samples (with the upper bound: any of the K right).

1. find each run's model (its best/ folder, or the folder itself);
2. evaluate each: greedy, then K samples scored by vote (and by the verifier);
3. the table to the console, compare.md, compare.json, and report.html with a bar chart.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from reftune.config import CompareConfig, EvalConfig, parse_runs, parse_task_options
from reftune.config.options import config_to_yaml
from reftune.errors import ReftuneError
from reftune.scoring.verification import verify_cots, wrong_step_share
from reftune.stages.evaluate import evaluate
from reftune.stages.report import bar_chart, example_completions, markdown_table, write_html
from reftune.tasks import get_task
from reftune.training.folders import announce, output_folder, release_lock, require_config
from reftune.training.samples import samples_name
from reftune.training.tracking import strict_json


def model_folder(run: str | Path) -> str:
    """A run folder's best model, or the folder itself when it is a model folder."""
    run = Path(run)
    for candidate in (run / "best", run):
        if (candidate / "config.json").is_file():
            return str(candidate)
    raise ReftuneError(f"{run} is neither a run folder with a best/ model nor a model folder "
                       f"(no config.json): did that run finish its first evaluation?")


def evaluation_folder(folder: Path, name: str, kind: str) -> Path:
    """Where evaluate_models writes a model's `kind` ("greedy" or "sampled") evaluation."""
    return folder / "eval" / f"{name.lower().replace(' ', '-')}-{kind}"


def evaluate_models(models: dict[str, str], folder: Path, evaluation: dict, num_samples: int,
                    verifier: str | None, temperature: float = 1.0, sampled_limit: int | None = None) -> dict[str, dict]:
    """Per model: top1, vote (and rerank, upper_bound with a verifier) on evaluation["split"]; the
    sampled figures on its first `sampled_limit` questions when given (sampling costs num_samples
    greedy passes)."""
    results = {}
    sampled_evaluation = {**evaluation, "limit": sampled_limit or evaluation.get("limit")}
    for name, model in models.items():
        greedy = evaluate(EvalConfig(**evaluation, model=model, output=str(evaluation_folder(folder, name, "greedy"))))
        sampled = evaluate(EvalConfig(**sampled_evaluation, model=model, temperature=temperature, num_samples=num_samples,
                                      mode="rerank" if verifier else "vote", verifier=verifier,
                                      output=str(evaluation_folder(folder, name, "sampled"))))
        upper_bound = sampled.upper_bound if sampled.upper_bound is not None else sampled.pass_at[num_samples]
        greedy_samples = evaluation_folder(folder, name, "greedy") / samples_name(evaluation["split"])
        results[name] = {"top1": greedy.top1_accuracy, "vote": sampled.vote_accuracy,
                         "rerank": sampled.rerank_accuracy, "upper_bound": upper_bound,
                         "wrong_steps": right_for_wrong_reasons(evaluation, greedy_samples),
                         "greedy_samples": str(greedy_samples)}
    return results


def right_for_wrong_reasons(evaluation: dict, samples_file: Path) -> float | None:
    """Of a model's right greedy answers, the share whose stated arithmetic is wrong (verification)."""
    task = get_task(evaluation["task"], style=evaluation.get("style", "nl"),
                    **parse_task_options(evaluation.get("task_options", "")))
    rows = [json.loads(line) for line in samples_file.open()]
    return wrong_step_share(verify_cots(task, [row["samples"][0] for row in rows], [row["gold"] for row in rows]))


def table(results: dict[str, dict], num_samples: int) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the comparison table (percentages; "-" where there is no verifier, or no
    right answer to check the steps of)."""
    headers = ["method", "top-1", f"vote@{num_samples}", f"rerank@{num_samples}", f"any right@{num_samples}",
               "right, wrong steps"]
    rows = [[name] + [f"{100 * r[key]:.1f}%" if r.get(key) is not None else "-"
                      for key in ("top1", "vote", "rerank", "upper_bound", "wrong_steps")] for name, r in results.items()]
    return headers, rows


def write_comparison(folder: Path, title: str, summary_line: str, results: dict[str, dict], num_samples: int,
                     config_text: str, plots: list[Path] = ()) -> Path:
    """compare.json, compare.md and report.html (bar chart first, then any other plots)."""
    headers, rows = table(results, num_samples)
    (folder / "plots").mkdir(exist_ok=True)
    chart = bar_chart(folder / "plots" / "methods.png", title,
                      {name: {"top-1": r["top1"], f"vote@{num_samples}": r["vote"], f"rerank@{num_samples}": r["rerank"]}
                       for name, r in results.items()})
    (folder / "compare.json").write_text(strict_json(results, indent=1))
    (folder / "compare.md").write_text(f"# {title}\n\n{summary_line}\n\n{markdown_table(headers, rows)}\n")
    examples = {name: example_completions(Path(r["greedy_samples"]), right=1, wrong=1) for name, r in results.items()}
    return write_html(folder / "report.html", title, summary_line, headers, rows, [chart, *plots], examples,
                      config_text)


def compare(config: CompareConfig) -> dict:
    require_config(config, "compare", CompareConfig)
    started = time.perf_counter()
    folder = output_folder(config, "compare")
    announce("compare", config, folder)
    # 1. the models
    models = {name: model_folder(run) for name, run in parse_runs(config.runs).items()}
    # 2. the same evaluation for each
    evaluation = dict(task=config.task, style=config.style, data=config.data, task_options=config.task_options,
                      split=config.split, limit=config.limit, max_new_tokens=config.max_new_tokens,
                      batch_size=config.batch_size, seed=config.seed, progress=config.progress, report_to="jsonl")
    results = evaluate_models(models, folder, evaluation, config.num_samples, config.verifier, config.temperature)
    # 3. the table and the report
    summary_line = (f"{config.task} ({config.style}), split {config.split}: greedy top-1, and vote / rerank over "
                    f"the same {config.num_samples} samples at temperature {config.temperature}"
                    + ("" if config.verifier else " (no --verifier: no rerank column)"))
    report = write_comparison(folder, f"reftune compare: {config.task}", summary_line, results, config.num_samples,
                              config_to_yaml(config))
    print(f"\n{markdown_table(*table(results, config.num_samples))}\n\nReport: {report}", flush=True)
    release_lock(folder)
    return {"results": results, "report": str(report), "seconds": round(time.perf_counter() - started, 1)}
