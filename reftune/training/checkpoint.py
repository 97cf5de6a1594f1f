"""Checkpoints that a user can load and a run can resume from.

    OUTPUT/checkpoints/step-000120/
        model/              a HF folder (AutoModelForCausalLM.from_pretrained loads it as it is)
        state/              accelerate's save_state: weights, optimizer, scheduler, RNG of every process
        trainer_state.json  step, epoch, best dev score, training seconds so far

A checkpoint is written under a hidden scratch name and renamed into place once complete, so a reader
(a resume, another process) never sees half of one, and a failed save (disk full, no permission)
leaves the previous checkpoint as it was.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from reftune.errors import ReftuneError
from reftune.training.tracking import strict_json

TRAINER_STATE = "trainer_state.json"


@dataclass
class TrainerState:
    """What a checkpoint records besides the weights: where the run stands."""

    step: int = 0
    epoch: int = 0
    best_score: float | None = None  # the best dev score so far (accuracy, or the verifier's AUC)
    best_step: int | None = None
    seconds: float = 0.0             # training wall time summed over every resume

    @classmethod
    def read(cls, checkpoint: Path) -> "TrainerState":
        return cls(**json.loads((checkpoint / TRAINER_STATE).read_text()))


def checkpoint_folder(output: str | Path, step: int) -> Path:
    return Path(output) / "checkpoints" / f"step-{step:06d}"


def save_checkpoint(accelerator, output: str | Path, state: TrainerState, export: Callable[[Path], None],
                    keep: int) -> Path:
    """All processes call this. `export(folder)` writes the HF model folder (main process only)."""
    final = checkpoint_folder(output, state.step)
    scratch = final.with_name(f".{final.name}.partial")  # never matched by complete_checkpoints
    main = accelerator.is_main_process
    try:
        accelerator.wait_for_everyone()
        if main:
            shutil.rmtree(scratch, ignore_errors=True)
            export(scratch / "model")
            (scratch / "state").mkdir(parents=True)
        # Every process writes its RNG state into state/: none may start before the main one made it.
        accelerator.wait_for_everyone()
        accelerator.save_state(str(scratch / "state"))
        accelerator.wait_for_everyone()
        if main:
            (scratch / TRAINER_STATE).write_text(strict_json(asdict(state), indent=1))
            replace_folder(scratch, final)
            for old in complete_checkpoints(output)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        if main:
            shutil.rmtree(scratch, ignore_errors=True)
        previous = complete_checkpoints(output)
        kept = f"the last complete checkpoint, {previous[-1]}, is intact" if previous else "no earlier checkpoint exists"
        raise ReftuneError(f"could not write the checkpoint {final}: {exc.strerror or exc} "
                           f"({exc.filename or final}); {kept}: free disk space or fix the folder's permissions, "
                           f"then continue with --resume") from None
    accelerator.wait_for_everyone()
    return final


def replace_folder(source: Path, destination: Path) -> None:
    """Move `source` to `destination`, replacing it; at every moment one complete folder is there or
    being swapped by two renames."""
    if destination.exists():
        retired = destination.with_name(f".{destination.name}.old")
        shutil.rmtree(retired, ignore_errors=True)
        os.rename(destination, retired)
        os.rename(source, destination)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.rename(source, destination)


def checkpoint_keeping_best(accelerator, output: str | Path, state: TrainerState, score: float | None,
                            export: Callable[[Path], None], keep: int, metric: str = "dev accuracy") -> str:
    """Record the step's dev score in `state` (None: not evaluated, as when interrupted), write the
    step's checkpoint, and copy its model to OUTPUT/best when it is the best so far. Returns a line for
    the progress bar."""
    # a NaN score compares as neither better nor worse: it is never the best
    improved = score is not None and math.isfinite(score) and (state.best_score is None or score > state.best_score)
    if improved:
        state.best_score, state.best_step = score, state.step
    checkpoint = save_checkpoint(accelerator, output, state, export, keep)
    if improved and accelerator.is_main_process:
        copy_model(checkpoint / "model", Path(output) / "best")
    if score is None:
        return f"checkpoint written (not evaluated): {checkpoint}"
    return f"{metric} {score:.1%} (best {state.best_score:.1%} at step {state.best_step})"


def complete_checkpoints(output: str | Path) -> list[Path]:
    """Checkpoints whose save finished, oldest first."""
    root = Path(output) / "checkpoints"
    found = [path for path in root.glob("step-*") if (path / TRAINER_STATE).exists()] if root.exists() else []
    return sorted(found, key=lambda path: path.name)


def latest_checkpoint(output: str | Path) -> Path:
    found = complete_checkpoints(output)
    if not found:
        raise ReftuneError(f"--resume: {output} holds no complete checkpoint to continue from; "
                           f"drop --resume to start afresh")
    return found[-1]


def copy_model(source: Path, destination: Path) -> None:
    """Replace `destination` with a copy of the HF folder `source` (the best model so far)."""
    scratch = destination.with_name(f".{destination.name}.partial")
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(source, scratch)
    replace_folder(scratch, destination)
