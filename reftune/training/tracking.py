"""Where metrics go: a JSONL file always, TensorBoard and Weights & Biases when asked; progress bars.
The only module that knows TensorBoard, W&B or tqdm. Only the main process writes."""
from __future__ import annotations

import json
import math
import numbers
import sys
import time
from pathlib import Path

from reftune.errors import ReftuneError


class Tracker:
    """`log(metrics, step)` writes one JSON line to metrics.jsonl and forwards to the other sinks.

    resumed_at: the step of the checkpoint a resumed run continues from. What was logged after it
    (the steps between that checkpoint and the crash) is cut from metrics.jsonl and TensorBoard, so
    each step is logged once and curves never go backwards."""

    def __init__(self, folder: str | Path, report_to: list[str], config: dict | None = None,
                 enabled: bool = True, run_name: str | None = None, resumed_at: int | None = None):
        self.enabled = enabled
        self.folder = Path(folder)
        self.writers = []
        if not enabled:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        if resumed_at is not None:
            cut_metrics(self.folder / "metrics.jsonl", resumed_at)
        self.jsonl = open(self.folder / "metrics.jsonl", "a")
        if "tensorboard" in report_to:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resumed_at is None else resumed_at + 1  # drops events at steps >= purge
            self.writers.append(_TensorBoard(SummaryWriter(str(self.folder / "tensorboard"), purge_step=purge)))
        if "wandb" in report_to:
            try:
                import wandb
            except ImportError:
                raise ReftuneError("report_to names wandb, which is not installed: pip install wandb") from None
            self.writers.append(_WandB(wandb.init(project="reftune", name=run_name or self.folder.name,
                                                  config=config or {}, dir=str(self.folder))))

    def log(self, metrics: dict, step: int) -> None:
        if not self.enabled:
            return
        record = {"step": step, "time": round(time.time(), 3), **metrics}
        self.jsonl.write(strict_json(record) + "\n")
        self.jsonl.flush()
        figures = {k: v for k, v in plain_json(metrics).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for writer in self.writers:
            writer.log({k: float(v) for k, v in figures.items()}, step)

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            for writer in self.writers:
                writer.close()


class _TensorBoard:
    def __init__(self, writer):
        self.writer = writer

    def log(self, numbers: dict, step: int) -> None:
        for key, value in numbers.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _WandB:
    def __init__(self, run):
        self.run = run

    def log(self, numbers: dict, step: int) -> None:
        self.run.log(numbers, step=step)

    def close(self) -> None:
        self.run.finish()


def plain_json(value):
    """`value` as JSON that every reader takes: numpy and 0-d torch numbers as Python numbers, and a
    number that is not finite as None (null), since NaN and Infinity are not JSON (strict readers,
    jq and JavaScript refuse them). Containers are converted through; other values are left as they are.

    >>> plain_json({"loss": float("nan"), "n": [1, float("inf"), 0.5], "ok": True})
    {'loss': None, 'n': [1, None, 0.5], 'ok': True}
    """
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # a 0-d tensor, a numpy scalar
        value = value.item()
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, dict):
        return {key: plain_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(item) for item in value]
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value) if math.isfinite(value) else None
    return value


def strict_json(value, **options) -> str:
    """json.dumps of plain_json(value), refusing NaN and Infinity should any be left (options: indent,
    default...)."""
    return json.dumps(plain_json(value), allow_nan=False, **options)


def cut_metrics(path: Path, last_step: int) -> None:
    """Keep the records of steps <= last_step of a JSONL file whose lines carry a step (metrics.jsonl,
    rollouts.jsonl), rewritten under a scratch name, then renamed."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= last_step]
    scratch = path.with_name(f".{path.name}.partial")
    scratch.write_text("".join(line + "\n" for line in kept))
    scratch.replace(path)


def read_metrics(folder: str | Path) -> list[dict]:
    path = Path(folder) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def progress_bar(total: int | None, description: str, enabled: bool = True, initial: int = 0):
    """A tqdm bar on stderr; disabled bars still accept update() and set_postfix()."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, initial=initial, disable=not enabled, file=sys.stderr,
                dynamic_ncols=True, leave=False)


class RunBar:
    """A training run's bar whose total and ETA are true: over steps, or, when a time budget will
    end the run, over its seconds (the step count then shows beside it)."""

    def __init__(self, description: str, total_steps: int, done_steps: int, enabled: bool,
                 budget_seconds: float | None = None, spent_seconds: float = 0.0):
        from tqdm.auto import tqdm

        self.total_steps, self.budget = total_steps, budget_seconds
        if budget_seconds is None:
            self.bar = progress_bar(total_steps, description, enabled, initial=done_steps)
        else:
            self.bar = tqdm(total=round(budget_seconds), initial=round(spent_seconds), desc=description, unit="s",
                            disable=not enabled, file=sys.stderr, dynamic_ncols=True, leave=False,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n}/{total} s [{elapsed}<{remaining}{postfix}]")

    def advance(self, step: int, spent_seconds: float, **figures) -> None:
        if self.budget is None:
            self.bar.update(1)
        else:
            self.bar.update(min(round(spent_seconds), self.bar.total) - self.bar.n)
            figures = {"step": f"{step}/{self.total_steps}", **figures}
        self.bar.set_postfix(figures, refresh=True)

    def write(self, line: str) -> None:
        self.bar.write(line)

    def close(self) -> None:
        self.bar.close()
