"""The `reftune` command: one table of subcommands (COMMANDS), each a function over its resolved config
or its parsed arguments.

A user's mistake (ReftuneError) prints one line and exits 2, with no stack trace.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from reftune.config import (AnnotateConfig, CompareConfig, DemoConfig, EvalConfig, OfflineSTConfig, OnlineSTConfig,
                            RLConfig, SampleConfig, ServeConfig, SFTConfig, VerifierConfig)
from reftune.config.options import add_config_arguments, resolve_config
from reftune.errors import ReftuneError


def check_gold(task_name: str, style: str, split: str, data: str | None, limit: int | None) -> dict:
    """Load a task's data, build every SFT target, and verify each one (reftune.scoring.verification): the
    final answer against the gold, programs run in the sandbox, and every arithmetic step it states."""
    from reftune.scoring.verification import VERDICT_STATUSES, verify_cots
    from reftune.tasks import get_task

    if limit is not None and limit < 1:
        raise ReftuneError(f"--limit must be at least 1 (leave it out for all examples), got {limit}")
    task = get_task(task_name, style=style)
    started = time.perf_counter()
    examples = task.load(split, data)[:limit]
    with_cot = [example for example in examples if example.cot]
    verdicts = verify_cots(task, [task.target(e) for e in with_cot], [e.answer for e in with_cot])
    counts = {status: sum(v.status == status for v in verdicts) for status in VERDICT_STATUSES}
    return {
        "task": task_name, "style": style, "split": split, "source": data_label(split, data), "examples": len(examples),
        "with_cot": len(with_cot), "gold_cot_correct": counts["correct"],
        "counts": {status: count for status, count in counts.items() if count},
        "not_correct": [{"id": e.id, "status": v.status, "detail": v.detail}
                        for e, v in zip(with_cot, verdicts) if not v.ok][:10],
        "seconds": round(time.perf_counter() - started, 2),
    }


def data_label(split: str, data: str | None) -> str:
    """What the data is called in check's line: the file's name when --data names a file (its split is
    whatever the file holds), else the split read from the folder, the built-in data or the hub."""
    if data is not None and Path(data).expanduser().is_file():
        return Path(data).name
    return split


def print_check(result: dict) -> None:
    counts = ", ".join(f"{count} {status}" for status, count in result["counts"].items())
    print(f"{result['task']} ({result['style']}, {result['source']}): {result['examples']} examples, "
          f"{result['with_cot']} with a gold CoT: {counts or 'nothing to verify'} ({result['seconds']} s)")
    for bad in result["not_correct"]:
        print(f"  {bad['id']}: {bad['status']}: {bad['detail']}")
    if len(result["not_correct"]) < result["with_cot"] - result["gold_cot_correct"]:
        print(f"  ... (the first {len(result['not_correct'])} shown)")


def command_check(args: argparse.Namespace) -> int:
    result = check_gold(args.task, args.style, args.split, args.data, args.limit)
    print_check(result)
    return 0 if result["gold_cot_correct"] == result["with_cot"] else 1


def command_demo(config) -> int:
    from reftune.stages.demo import demo

    demo(config)
    return 0


def best_line(summary, metric: str = "dev_accuracy") -> str:
    best = getattr(summary, f"best_{metric}")
    if best is None:
        return f"not evaluated yet; last checkpoint at step {summary.steps}"
    shown = f"{best:.1%}" if metric == "dev_accuracy" else f"{best:.3f}"
    return f"best {metric.replace('_', ' ')} {shown} at step {summary.best_step}; model: {summary.best_model}"


def command_sft(config) -> int:
    from reftune.stages.sft import sft

    summary = sft(config)
    print(f"{summary_prefix(config)}: {summary.steps} steps in {summary.seconds} s; {best_line(summary)}")
    return 0


def summary_prefix(config) -> str:
    return "offline-st" if isinstance(config, OfflineSTConfig) else "sft"


def command_rl(config) -> int:
    from reftune.stages.rl import rl

    summary = rl(config)
    print(f"rl: {summary.steps} steps in {summary.seconds} s; {best_line(summary)}")
    return 0


def command_online_st(config) -> int:
    from reftune.stages.online_st import online_st

    summary = online_st(config)
    print(f"online-st: {summary.steps} steps in {summary.seconds} s; {best_line(summary)}")
    return 0


def command_verifier(config) -> int:
    from reftune.stages.verifier import verifier

    summary = verifier(config)
    train = summary.balance["train"]
    print(f"verifier: {summary.steps} steps on {train['samples']} distinct samples ({train['right_fraction']:.1%} "
          f"right); {best_line(summary, 'dev_auc')} (use it with reftune eval --mode rerank --verifier)")
    return 0


def command_compare(config) -> int:
    from reftune.stages.compare import compare

    compare(config)
    return 0


def command_eval(config) -> int:
    from reftune.stages.evaluate import evaluate

    summary = evaluate(config)
    print(f"{config.task} ({config.style}, {config.split}, {summary.questions} questions): "
          + ", ".join(f"{k} {v:.1%}" for k, v in summary.figures().items()) + f"; written to {config.output}")
    return 0


def command_review(args: argparse.Namespace) -> int:
    from reftune.review.command import command_review as review

    return review(args)


def command_annotate(config) -> int:
    from reftune.annotate.run import annotate

    summary = annotate(config)
    print(f"annotate: {summary['covered']} of {summary['questions']} questions have a verified CoT "
          f"({summary['coverage']:.1%}), {summary['cots']} CoTs; verdicts {summary['verdicts']}; "
          f"written to {config.output}/annotated.json")
    return 130 if summary["interrupted"] else 0


def command_serve(config) -> int:
    from reftune.serve.app import serve

    serve(config)
    return 0


def serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default=argparse.SUPPRESS, metavar="MODEL",
                        help="the model to serve (or --model)")


def check_arguments(parser: argparse.ArgumentParser) -> None:
    from reftune.tasks import STYLES, TASKS

    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--style", default="nl", choices=STYLES)
    parser.add_argument("--split", default="train")
    parser.add_argument("--data", help="a .json / .jsonl file or folder; default: built-in or hub")
    parser.add_argument("--limit", type=int, help="check only the first N examples")


def review_arguments(parser: argparse.ArgumentParser) -> None:
    from reftune.review.command import add_arguments

    add_arguments(parser)


@dataclass(frozen=True)
class Command:
    """A subcommand: the function that runs it, its help line, and what it reads from the command line.
    With a config class, one flag per field and --config YAML, and the function receives the resolved
    config; without one, the function receives the parsed arguments. `arguments` adds the command's
    own (serve's positional MODEL comes before its config's flags)."""

    run: Callable
    help: str
    config: type | None = None
    arguments: Callable[[argparse.ArgumentParser], None] | None = None

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        if self.arguments:
            self.arguments(parser)
        if self.config:
            add_config_arguments(parser, self.config)


COMMANDS = {
    "demo": Command(command_demo, "the main job: warm-up SFT, then ReFT against SFT on the built-in arithmetic task",
                    DemoConfig),
    "sft": Command(command_sft, "warm-up SFT (or the SFT baseline) on a task's gold chains of thought", SFTConfig),
    "rl": Command(command_rl, "ReFT: PPO from a warm-up model, rewarded by answer correctness, KL to the warm-up",
                  RLConfig),
    "eval": Command(command_eval, "accuracy on a split: greedy top-1, or vote@K and pass@k with --num-samples",
                    EvalConfig),
    "sample": Command(command_eval, "sample K CoTs per question and write them with answers and rewards", SampleConfig),
    "offline-st": Command(command_sft, "baseline: SFT the base model on the warm-up model's correct samples and the "
                          "gold CoTs", OfflineSTConfig),
    "online-st": Command(command_online_st, "baseline: sample as you train, NLL on the correct samples and the gold "
                         "CoTs", OnlineSTConfig),
    "verifier": Command(command_verifier, "a correctness classifier on sampled CoTs, for eval --mode rerank",
                        VerifierConfig),
    "compare": Command(command_compare, "the paper's table for your runs: top-1, vote@K, rerank@K, with a bar chart",
                       CompareConfig),
    "annotate": Command(command_annotate, "make verified CoT training data from calculator notes, an endpoint or a "
                        "local model", AnnotateConfig),
    "serve": Command(command_serve, "an OpenAI-compatible HTTP server over a model reftune loads", ServeConfig,
                     serve_arguments),
    "review": Command(command_review, "a local web app to browse, check, correct and export CoTs (samples, rollouts, "
                      "data)", arguments=review_arguments),
    "check": Command(command_check, "verify every gold CoT of a dataset: its final answer and each arithmetic step it "
                     "states", arguments=check_arguments),
}


def configs() -> dict[str, type]:
    """The config class of each command that has one (the presets in configs/ are checked against them)."""
    return {name: command.config for name, command in COMMANDS.items() if command.config}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with `only` the options of that one command (the others listed by name):
    building every command's options takes most of a second, which a command's start should not pay."""
    from reftune import __version__

    parser = argparse.ArgumentParser(prog="reftune", description="Reinforced Fine-Tuning (ReFT) of language "
                                     "models on reasoning tasks whose answers can be checked.",
                                     epilog="`reftune COMMAND --help` lists a command's options.")
    parser.add_argument("--version", action="version", version=f"reftune {__version__}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = subcommands.add_parser(name, help=command.help, description=command.help)
        if only is None or name == only:
            command.add_options(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    parser = build_parser(given[0] if given and given[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:  # `reftune` alone: what it can do
        parser.print_help()
        return 2
    command = COMMANDS[args.command]
    try:
        return command.run(resolve_config(command.config, args) if command.config else args)
    except ReftuneError as exc:
        print(f"reftune {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside a training loop
        print(f"\nreftune {args.command}: stopped (Ctrl-C); a checkpoint becomes visible only once complete, "
              f"so the last one in the output folder can be resumed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
