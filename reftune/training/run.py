"""The record every training stage keeps the same way: one `Run` holds the run's folder (locked for
this process), its saved config, the checkpoint it resumes from, the step it stands at, the metric
sinks and progress bar, the clock (summed over resumes), Ctrl-C handling and the checkpoint / best
bookkeeping. A stage's loop stays inline and reads like the paper's algorithm box around it:

    run = Run(config, "sft", SFTConfig)
    ... data, model, optimizer ...
    model, optimizer = run.prepare(model, optimizer)   # and, with --resume, weights, optimizer, RNG, step
    run.begin(total_steps, finite=("loss", "grad_norm"))
    for step in range(run.state.step, total_steps):
        ... one step ...
        run.step_done(metrics)        # a loss or gradient that is not finite stops the run here
        if run.due(every):            # the cadence, the last step, a time budget, Ctrl-C, a stop
            run.checkpoint(evaluate, export, epoch)
        if run.stopping:
            break
    return run.finish(SFTSummary, **extra)         # the stage's typed summary, also written as summary.json

A run that diverges is never kept: a step that leaves the weights non-finite, or whose watched figures
(loss, grad norm) are not finite (for `patience` steps in a row), stops the run at once with one line
naming the step and the last checkpoint, so no checkpoint ever holds non-finite weights or is chosen
as the best after the run went wrong.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from reftune.config import sinks
from reftune.config.options import config_from_yaml_text
from reftune.errors import ReftuneError
from reftune.training import checkpoint
from reftune.training.checkpoint import TrainerState, complete_checkpoints
from reftune.training.folders import (CONFIG_FILE, announce, output_folder, release_lock, require_config,
                                     write_atomically)
from reftune.training.preparation import build_accelerator, seed_everything
from reftune.training.sharding import (gathered, is_sharded, quiet_view_warning, refuse_lora, refuse_unsupported,
                                      whole_weights)
from reftune.training.summaries import TrainingSummary
from reftune.training.tracking import RunBar, Tracker, cut_metrics, strict_json

# What may differ when a run is resumed: how long it goes on, how often it is evaluated, where it
# reports, whether it recomputes activations to save memory and how many dev questions it decodes
# together (the same training either way).
# Anything else would train on with settings the saved config does not record.
RESUMABLE_OPTIONS = ("resume", "epochs", "max_steps", "max_seconds", "eval_every", "keep_checkpoints", "progress",
                     "verbose", "report_to", "gradient_checkpointing", "eval_batch_size")


def changed_options(saved: dict, config) -> dict[str, tuple]:
    """Options whose value differs from the saved run's: name -> (saved, now), the resumable ones aside.

    >>> from reftune.config import SFTConfig
    >>> changed_options({"learning_rate": 1e-5, "epochs": 3}, SFTConfig(learning_rate=1e-3, epochs=5))
    {'learning_rate': (1e-05, 0.001)}
    """
    now = dataclasses.asdict(config)
    return {name: (saved[name], now[name]) for name in saved
            if name in now and name not in RESUMABLE_OPTIONS and saved[name] != now[name]}


def refuse_changed_options(config, folder: Path, checkpointed: bool) -> None:
    """On resume: refuse any change outside RESUMABLE_OPTIONS, naming each option, old and new (even
    before the first checkpoint: a resumed run reuses the samples its first attempt drew)."""
    path = folder / CONFIG_FILE
    if path.exists():
        changes = changed_options(config_from_yaml_text(path.read_text()), config)
        if changes:
            listed = "; ".join(f"{name}: {old!r} -> {new!r}" for name, (old, new) in changes.items())
            fresh = ("drop --resume to start it afresh in the same folder (it has no checkpoint yet)" if not checkpointed
                     else "start a new run in a new --output")
            raise ReftuneError(f"--resume with other options than the run in {folder} was started with ({listed}); "
                               f"only {', '.join(RESUMABLE_OPTIONS[1:])} may change: drop the others, or {fresh}")


def resume_command(folder: Path) -> str:
    """The command that continues this run: the one given, with --resume (and --output) added."""
    if Path(sys.argv[0]).name not in ("reftune", "cli.py"):  # not the command line: the Python API
        return f"run the same stage again with resume=True and output={str(folder)!r}"
    words = ["reftune", *sys.argv[1:]]
    words += [] if "--resume" in words else ["--resume"]
    words += [] if any(w == "--output" or w.startswith("--output=") for w in words) else ["--output", str(folder)]
    return shlex.join(words)


class Run:
    """One training run of `stage` (see the module docstring for how a stage uses it); `config` must be
    a `config_type`, checked before anything is written."""

    def __init__(self, config, stage: str, config_type: type, seed_per_process: bool = False):
        require_config(config, stage.replace("-", "_"), config_type)
        self.config, self.stage = config, stage
        self.accelerator = build_accelerator()
        refuse_unsupported(self.accelerator, stage)
        self.main = self.accelerator.is_main_process
        self.folder = output_folder(config, stage, config.resume, self.main, training=True)
        # A run that failed before its first checkpoint is resumed from step 0 (with the samples it drew)
        checkpoints = complete_checkpoints(self.folder) if config.resume else []
        self.resume_from = checkpoints[-1] if checkpoints else None
        if self.main:
            if config.resume:
                refuse_changed_options(config, self.folder, bool(checkpoints))
            note = (f" (resuming from {self.resume_from.name})" if self.resume_from else
                    " (no checkpoint was written yet: starting from step 0)" if config.resume else "")
            announce(stage, config, self.folder, note)
        # Each process samples differently in the on-policy stages; the rest see the same draws.
        seed_everything(config.seed + (self.accelerator.process_index if seed_per_process else 0))
        self.state = TrainerState()
        self.model = None  # the prepared model, once prepare() has run
        self.stop_reason: str | None = None
        self.out_of_time = self.interrupted = False

    @property
    def model_to_resume(self) -> str | None:
        """The checkpoint's model folder (its tokenizer is the one trained with), when resuming."""
        return str(self.resume_from / "model") if self.resume_from else None

    def prepare(self, model, optimizer, scheduler=None):
        """The model and optimizer through accelerator.prepare (a scheduler stays out of it, since
        accelerate would step it once per process per step: it is only registered for checkpoints),
        then the checkpoint's state when resuming. Returns the prepared model and optimizer. Under FSDP the
        prepared model's parameters are new (sharded) tensors: collect trainable ones after this."""
        refuse_lora(self.accelerator, model)
        if is_sharded(self.accelerator):
            quiet_view_warning()
        model, optimizer = self.accelerator.prepare(model, optimizer)
        self.model = model
        if scheduler is not None:
            self.accelerator.register_for_checkpointing(scheduler)
        self.resume()
        return model, optimizer

    def resume(self) -> None:
        """After accelerator.prepare(): weights, optimizer, scheduler, RNG of every process, and the
        trainer state, from the checkpoint (nothing for a fresh run)."""
        if self.resume_from:
            self.accelerator.load_state(str(self.resume_from / "state"))
            self.state = TrainerState.read(self.resume_from)

    def begin(self, total_steps: int, metric: str = "dev_accuracy", tracked: dict | None = None,
              finite: tuple[str, ...] = (), patience: int = 1, logs: tuple[str, ...] = ()) -> None:
        """Open the metric sinks and the bar; start the clock; take over Ctrl-C. `tracked`: extra fields
        for the sinks' run config. `finite`: the step metrics (loss, grad norm) that stop the run when
        they are not finite for `patience` steps in a row. What an earlier attempt logged after the step
        this run starts at (the checkpoint's, or 0) is cut from metrics.jsonl, TensorBoard and the
        stage's own JSONL `logs`, so each step is logged once."""
        config = self.config
        self.total_steps, self.metric = total_steps, metric
        self.finite, self.patience, self.non_finite_steps = finite, patience, 0
        earlier = self.resume_from or (self.folder / "metrics.jsonl").exists()  # or a retry that took it over
        cut_at = self.state.step if earlier else None
        self.tracker = Tracker(self.folder, sinks(config.report_to), {**dataclasses.asdict(config), **(tracked or {})},
                               enabled=self.main, resumed_at=cut_at)
        for name in logs if self.main and cut_at is not None else ():
            cut_metrics(self.folder / name, cut_at)
        self.bar = RunBar(self.stage, total_steps, self.state.step, config.progress and self.main,
                          config.max_seconds, self.state.seconds)
        self.seconds_before, self.clock = self.state.seconds, time.perf_counter()
        self.previous_handler = take_over_interrupts(self)

    def seconds(self) -> float:
        """Training time so far, over every resume."""
        return self.seconds_before + time.perf_counter() - self.clock

    def step_done(self, metrics: dict, **figures) -> None:
        """Count the step, log its metrics, advance the bar (figures: shown beside it); stop a run whose
        watched metrics have not been finite for `patience` steps (all processes see the same figures)."""
        self.state.step += 1
        self.tracker.log(metrics, self.state.step)
        self.bar.advance(self.state.step, self.seconds(), **figures)
        bad = [name for name in self.finite if not math.isfinite(float(metrics[name]))]
        self.non_finite_steps = self.non_finite_steps + 1 if bad else 0
        if self.non_finite_steps >= self.patience:
            in_a_row = f" for {self.patience} steps in a row" if self.patience > 1 else ""
            self.diverge(f"the {' and '.join(bad)} {'is' if len(bad) == 1 else 'are'} not finite{in_a_row}")
        # A step can leave the weights non-finite with finite figures (an overflowing update): sampling
        # from them would fail, and no checkpoint may hold them.
        if not self.weights_are_finite():
            self.diverge("the weights are not finite")

    def stop(self, reason: str) -> None:
        """End the run after this step's checkpoint, with a reason for the summary."""
        self.stop_reason = reason

    @property
    def stopping(self) -> bool:
        return self.stop_reason is not None or self.out_of_time

    def due(self, every: int) -> bool:
        """Whether to evaluate and checkpoint now: every `every` steps, at the last step, or when the
        run is about to stop (time budget, Ctrl-C, stop()); all processes agree."""
        budget = self.config.max_seconds
        flags = torch.tensor([float(self.interrupted), float(budget is not None and self.seconds() >= budget)],
                             device=self.accelerator.device)
        interrupted, out_of_time = (self.accelerator.reduce(flags, reduction="sum") > 0).tolist()
        if interrupted and not self.stop_reason:
            self.interrupted = True
            self.stop_reason = f"interrupted (Ctrl-C) at step {self.state.step}"
        self.out_of_time = self.out_of_time or out_of_time
        step = self.state.step
        return step % every == 0 or step == self.total_steps or self.stopping

    def checkpoint(self, evaluate: Callable[[], float], export: Callable[..., None], epoch: int) -> None:
        """Score on dev (skipped when interrupted: the user is waiting), checkpoint, keep the best.
        Under FSDP the dev check decodes with the weights gathered once (sharding.gathered), and
        `export(folder, weights)` is given the whole weights, which every process helps gather."""
        score = None
        if not self.interrupted:
            with gathered(self.model):
                score = evaluate()
        if score is not None:
            self.tracker.log({self.metric: score}, self.state.step)
        self.state.epoch, self.state.seconds = epoch, round(self.seconds(), 2)
        weights = whole_weights(self.accelerator, self.model)
        if weights is not None:
            export = functools.partial(export, weights=weights)
        line = checkpoint.checkpoint_keeping_best(self.accelerator, self.folder, self.state, score, export,
                                                  self.config.keep_checkpoints, self.metric.replace("_", " "))
        if self.main:
            self.bar.write(f"step {self.state.step}/{self.total_steps}: {line}")

    def finish(self, summary_type: type[TrainingSummary], **extra) -> TrainingSummary:
        """Close the sinks and the bar, hand Ctrl-C back, write summary.json and release the folder.
        Returns the stage's summary: steps, best dev score (under the metric's name) and step, the best
        model's folder, training seconds over all resumes, why it stopped early if it did, and `extra`."""
        restore_interrupts(self.previous_handler)
        self.bar.close()
        self.tracker.close()
        summary = summary_type(output=str(self.folder), steps=self.state.step, best_step=self.state.best_step,
                               best_model=str(self.folder / "best"), stopped=self.stop_reason,
                               seconds=round(self.seconds(), 2), **{f"best_{self.metric}": self.state.best_score},
                               **extra)
        if self.main:
            write_atomically(self.folder / "summary.json", strict_json(summary.as_json(), indent=1))
            if self.interrupted:
                print(f"reftune {self.stage}: stopped at step {self.state.step} (checkpoint written); continue "
                      f"with:\n  {resume_command(self.folder)}", flush=True)
        release_lock(self.folder)
        return summary

    def weights_are_finite(self) -> bool:
        """Whether every process's trainable weights (its shards, under FSDP) are finite. Read off each
        weight's sum, a twentieth of the time of a full isfinite: an inf or a NaN anywhere makes it
        non-finite (a finite sum could only overflow on weights near 1e30, a diverged run anyway)."""
        local = [p.to_local() if hasattr(p, "to_local") else p for p in self.model.parameters() if p.requires_grad]
        with torch.no_grad():
            sums = torch.stack([p.detach().sum(dtype=torch.float32) for p in local]) if local else torch.zeros(1)
            finite = torch.isfinite(sums).all().float().to(self.accelerator.device)
        return float(self.accelerator.reduce(finite, reduction="sum")) == self.accelerator.num_processes

    def diverge(self, what: str):
        """End a run that went non-finite: close the sinks and the bar, hand Ctrl-C and the folder back,
        and raise one line naming the step and the last complete checkpoint (which never holds
        non-finite weights). No summary.json: the run did not finish."""
        restore_interrupts(self.previous_handler)
        self.bar.close()
        self.tracker.close()
        release_lock(self.folder)
        found = complete_checkpoints(self.folder)
        last = (f"the last checkpoint before it is {found[-1]}" + (f" and best/ holds step {self.state.best_step}"
                                                                  if self.state.best_step is not None else "")
                if found else "no checkpoint was written before it")
        raise ReftuneError(f"{what} at step {self.state.step}: the run diverged and stopped; {last}. Start again "
                           f"with a lower learning_rate (or a smaller max_grad_norm)")


def take_over_interrupts(run: Run):
    """The first Ctrl-C asks the run to finish its step and checkpoint; a second one stops at once.
    Returns the handler it replaced (None where signals cannot be taken: outside the main thread)."""
    def first_interrupt(signum, frame):
        run.interrupted = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if run.main:
            print(f"\nreftune {run.stage}: finishing step {run.state.step + 1}, then writing a checkpoint "
                  f"(Ctrl-C again stops at once)", file=sys.stderr, flush=True)

    try:
        return signal.signal(signal.SIGINT, first_interrupt)
    except ValueError:  # not the main thread
        return None


def restore_interrupts(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGINT, previous)
