"""Where metrics go: a JSONL file always, TensorBoard and Weights & Biases when asked; progress bars.
The only module that knows TensorBoard, W&B or tqdm. Only the main process writes."""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from reftune.errors import ReftuneError


class Tracker:
    """`log(metrics, step)` writes one JSON line to metrics.jsonl and forwards to the other sinks."""

    def __init__(self, folder: str | Path, report_to: list[str], config: dict | None = None,
                 enabled: bool = True, run_name: str | None = None):
        self.enabled = enabled
        self.folder = Path(folder)
        self.writers = []
        if not enabled:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(self.folder / "metrics.jsonl", "a")
        if "tensorboard" in report_to:
            from torch.utils.tensorboard import SummaryWriter

            self.writers.append(_TensorBoard(SummaryWriter(str(self.folder / "tensorboard"))))
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
        self.jsonl.write(json.dumps(record, default=float) + "\n")
        self.jsonl.flush()
        numbers = {k: float(v) for k, v in metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        for writer in self.writers:
            writer.log(numbers, step)

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


def read_metrics(folder: str | Path) -> list[dict]:
    path = Path(folder) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def progress_bar(total: int | None, description: str, enabled: bool = True, initial: int = 0):
    """A tqdm bar on stderr; disabled bars still accept update() and set_postfix()."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, initial=initial, disable=not enabled, file=sys.stderr,
                dynamic_ncols=True, leave=False)
