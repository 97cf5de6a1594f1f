"""A run's folder, as every stage takes it: the output folder (created, locked for this process, and
checked against what an earlier run left there), the record of which command made it, the resolved
config saved beside it, and writes that a reader sees whole or not at all."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from reftune import __version__
from reftune.config.options import config_to_yaml
from reftune.errors import ReftuneError
from reftune.model.cpu_linear import chosen_path
from reftune.training.checkpoint import complete_checkpoints

CONFIG_FILE = "config.yaml"
RUN_RECORD = "run.json"  # which command made a folder: a later command may not take it over
LOCK_FILE = ".lock"


def require_config(config, function: str, expected: type) -> None:
    """Refuse, before anything is written, a config made for another stage (rl(SFTConfig(...)) would
    otherwise fail halfway, on a field RLConfig has and SFTConfig lacks)."""
    if not isinstance(config, expected):
        raise ReftuneError(f"{function}() takes {expected.__name__}, not {type(config).__name__}: build the "
                           f"config of the stage you call, {function}({expected.__name__}(...))")


def output_folder(config, stage: str, resume: bool = False, main: bool = True, training: bool = False) -> Path:
    """config.output (or a new runs/<stage>-<time>, written back to the config), created, locked for
    this process and checked: a fresh run takes only an empty folder, or, for a `training` stage, one
    where a run of the same stage stopped before its first checkpoint (which holds nothing a later run
    needs: the retry starts at step 0 and cuts what that attempt logged); a resumed one only a folder
    that a run of the same stage made. Nothing another run wrote is ever replaced. Under `accelerate
    launch` the main process alone locks and checks; the others share its folder."""
    if not config.output:
        config.output = str(Path("runs") / f"{stage}-{time.strftime('%Y%m%d-%H%M%S')}")
    folder = Path(config.output)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReftuneError(f"cannot use --output {folder}: {exc.strerror} ({exc.filename}); "
                           f"choose a folder path you can write") from None
    if not main:
        return folder
    hold_lock(folder)
    record = folder / RUN_RECORD
    made_by = json.loads(record.read_text()).get("stage") if record.exists() else None
    others = sorted(p.name for p in folder.iterdir() if p.name not in (LOCK_FILE, RUN_RECORD, CONFIG_FILE))
    if training and made_by == stage and not complete_checkpoints(folder):
        others = []  # a retry of a run that failed before its first checkpoint may take the folder over
    others = others if others or made_by in (None, stage) else [RUN_RECORD]
    if resume and made_by is None:
        raise ReftuneError(f"--resume: {folder} holds no complete checkpoint to continue from (no run was "
                           f"started there); drop --resume to start afresh")
    if resume and made_by != stage:
        raise ReftuneError(f"--resume: {folder} holds a `reftune {made_by}` run, not a `reftune {stage}` one; "
                           f"name the folder of the run to continue")
    if not resume and others:
        owner = f"a `reftune {made_by}` run" if made_by else "other files"
        raise ReftuneError(f"--output {folder} already holds {owner} ({', '.join(others[:4])}"
                           f"{', ...' if len(others) > 4 else ''}): nothing is overwritten; choose a new --output"
                           + (" or add --resume to continue it" if made_by == stage else ""))
    if not resume:
        write_atomically(record, json.dumps({"stage": stage, "reftune": __version__,
                                             "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                             **kernel_record()}, indent=1))
    return folder


def kernel_record() -> dict:
    """Which kernels the CPU linear layers use here and on how many threads (the two paths, and
    reductions split over other thread counts, agree only to fp32 rounding, so a run repeats exactly
    only on the same ones); nothing on a GPU machine."""
    return {} if torch.cuda.is_available() else {"cpu_linear": chosen_path(), "cpu_threads": torch.get_num_threads()}


def announce(stage: str, config, folder: Path, note: str = "") -> None:
    """Save the resolved config in the folder and say, in one line, what the stage does and where the
    config went (with --verbose, the config too)."""
    write_atomically(folder / CONFIG_FILE, config_to_yaml(config))
    what = (type(config).__doc__ or stage).strip().splitlines()[0]
    print(f"reftune {stage}: {what} Config: {folder / CONFIG_FILE}{note}", flush=True)
    if getattr(config, "verbose", False):
        print(config_to_yaml(config), flush=True)


_held_locks: dict[Path, int] = {}  # folder -> open descriptor; the OS releases it when the process ends


def hold_lock(folder: Path) -> None:
    """An exclusive lock on the folder for this process's lifetime; a second process is refused in one
    line naming the holder's pid."""
    import fcntl

    folder = folder.resolve()
    if folder in _held_locks:
        return
    descriptor = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(descriptor, 32).decode(errors="replace").strip() or "unknown"
        os.close(descriptor)
        raise ReftuneError(f"{folder} is in use by another reftune process (pid {holder}): wait for it to "
                           f"finish, stop it, or choose another --output") from None
    os.ftruncate(descriptor, 0)
    os.write(descriptor, str(os.getpid()).encode())
    _held_locks[folder] = descriptor


def release_lock(folder: Path) -> None:
    descriptor = _held_locks.pop(Path(folder).resolve(), None)
    if descriptor is not None:
        os.close(descriptor)


def write_atomically(path: Path, text: str) -> None:
    """Write to a scratch name, then rename: a reader sees the old file or the new, never half."""
    scratch = path.with_name(f".{path.name}.partial")
    scratch.write_text(text)
    os.replace(scratch, path)
