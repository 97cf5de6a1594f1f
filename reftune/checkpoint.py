"""Checkpoints that a user can load and a run can resume from.

    OUTPUT/checkpoints/step-000120/
        model/              a HF folder (AutoModelForCausalLM.from_pretrained loads it as it is)
        state/              accelerate's save_state: weights, optimizer, scheduler, RNG of every process
        trainer_state.json  step, epoch, data position, best dev score; written last, so a checkpoint
                            without it (a run killed while saving) is never resumed from
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

from reftune.errors import ReftuneError

TRAINER_STATE = "trainer_state.json"


def checkpoint_folder(output: str | Path, step: int) -> Path:
    return Path(output) / "checkpoints" / f"step-{step:06d}"


def save_checkpoint(accelerator, output: str | Path, step: int, trainer_state: dict,
                    export: Callable[[Path], None], keep: int) -> Path:
    """All processes call this. `export(folder)` writes the HF model folder (main process only)."""
    folder = checkpoint_folder(output, step)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(folder, ignore_errors=True)
        export(folder / "model")
        (folder / "state").mkdir(parents=True)
    # Every process writes its RNG state into state/: none may start before the main one made it.
    accelerator.wait_for_everyone()
    accelerator.save_state(str(folder / "state"))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (folder / TRAINER_STATE).write_text(json.dumps({"step": step, **trainer_state}, indent=1))
        for old in complete_checkpoints(output)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return folder


def checkpoint_keeping_best(accelerator, output: str | Path, state: dict, dev_accuracy: float,
                            export: Callable[[Path], None], keep: int, metric: str = "dev accuracy") -> str:
    """Record the step's dev score (accuracy, or what `metric` names) in `state`, write the step's
    checkpoint, and copy its model to OUTPUT/best when it is the best so far. Returns a line for the
    progress bar."""
    improved = dev_accuracy > state["best_dev_accuracy"]
    if improved:
        state.update(best_dev_accuracy=dev_accuracy, best_step=state["step"])
    checkpoint = save_checkpoint(accelerator, output, state["step"], dict(state), export, keep)
    if improved and accelerator.is_main_process:
        copy_model(checkpoint / "model", Path(output) / "best")
    return (f"{metric} {dev_accuracy:.1%} (best {state['best_dev_accuracy']:.1%} "
            f"at step {state['best_step']})")


def complete_checkpoints(output: str | Path) -> list[Path]:
    """Checkpoints whose save finished, oldest first."""
    root = Path(output) / "checkpoints"
    found = [path for path in root.glob("step-*") if (path / TRAINER_STATE).exists()] if root.exists() else []
    return sorted(found, key=lambda path: path.name)


def start_or_resume(output: str | Path, resume: bool) -> Path | None:
    """The checkpoint to resume from, or None for a fresh run. A fresh run into a folder that holds
    another run's checkpoints is refused: pruning old checkpoints would delete that run's work."""
    if resume:
        return latest_checkpoint(output)
    if (Path(output) / "checkpoints").exists() and any((Path(output) / "checkpoints").iterdir()):
        raise ReftuneError(f"{output} already holds checkpoints of an earlier run: add --resume to "
                           f"continue it, or choose a new --output")
    return None


def latest_checkpoint(output: str | Path) -> Path:
    found = complete_checkpoints(output)
    if not found:
        raise ReftuneError(f"--resume: {output} holds no complete checkpoint to continue from; "
                           f"drop --resume to start afresh")
    return found[-1]


def read_trainer_state(folder: Path) -> dict:
    return json.loads((folder / TRAINER_STATE).read_text())


def copy_model(source: Path, destination: Path) -> None:
    """Replace `destination` with a copy of the HF folder `source` (the best model so far)."""
    scratch = destination.with_name(destination.name + ".tmp")
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(source, scratch)
    shutil.rmtree(destination, ignore_errors=True)
    scratch.rename(destination)
