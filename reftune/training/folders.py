"""What every stage does the same way, at the bottom of the stages' layers: the output folder (and its
lock), seeding, the accelerator, the data and model named by the config, sharding and data order."""
from __future__ import annotations

import json
import os
import random
import re
import time
from itertools import islice
from pathlib import Path

import torch

from reftune import __version__
from reftune.config import parse_task_options
from reftune.checkpoint import complete_checkpoints
from reftune.cpu_linear import chosen_path
from reftune.errors import ReftuneError
from reftune.models import TinySpec, load_policy, tokenizer_of
from reftune.options import config_to_yaml
from reftune.sharding import allow_fsdp_on_cpu, fsdp_requested
from reftune.tasks import get_task
from reftune.tasks.prompting import choose_prompt_format

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
    """Which kernels the CPU linear layers use here (the two paths agree only to fp32 rounding, so a
    run repeats exactly only on the same one); nothing on a GPU machine."""
    return {} if torch.cuda.is_available() else {"cpu_linear": chosen_path()}


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


def adamw(params, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with torch's fused kernel where the parameters' device has one (CPU, CUDA): one pass per
    parameter instead of a dozen ops; the arithmetic is AdamW's either way."""
    params = list(params)
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except RuntimeError:  # a device without the fused kernel
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def quiet_libraries() -> None:
    """reftune draws its own progress bars; the libraries' per-save bars and notices are noise.
    Warnings stay on: reftune's own calls must raise none (tests/test_warnings.py)."""
    import logging

    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("accelerate").setLevel(logging.ERROR)


def build_accelerator():
    """One process by default; under `accelerate launch` as many as it starts (DDP, FSDP, ZeRO). On CPU
    an FSDP config is honoured too (accelerate alone would run DDP: sharding.allow_fsdp_on_cpu)."""
    from accelerate import Accelerator

    quiet_libraries()
    cpu = not torch.cuda.is_available()
    accelerator = Accelerator(cpu=cpu)
    if cpu and fsdp_requested():
        allow_fsdp_on_cpu(accelerator)
    return accelerator


def parse_split(split: str) -> tuple[str, slice]:
    """"train[:-200]" -> ("train", slice(None, -200)): a slice of a split, as HF datasets writes it,
    so a dataset without a dev split can hold some training questions out.

    >>> parse_split("train[-200:]")
    ('train', slice(-200, None, None))
    >>> parse_split("dev")
    ('dev', slice(None, None, None))
    """
    match = re.fullmatch(r"([\w.-]+)(?:\[(-?\d*):(-?\d*)\])?", split.strip())
    if not match:
        raise ReftuneError(f"split {split!r} is not a name or a slice such as train[:-200]")
    name, start, stop = match.groups()
    return name, slice(int(start) if start else None, int(stop) if stop else None)


def load_examples(config, split: str, limit: int | None = None):
    """(task, the split's examples, the first `limit` of them when given)."""
    task = get_task(config.task, style=config.style, **parse_task_options(config.task_options))
    name, part = parse_split(split)
    examples = task.load(name, config.data)[part]
    if not examples:
        raise ReftuneError(f"split {split!r} of {config.task} holds no examples")
    return task, (examples[:limit] if limit else examples)


def use_prompt_format(task, config, train: list, model_name: str | None = None) -> None:
    """Lays out the task's prompts for the tokenizer of the model (`model_name`, else config.model) as
    config.prompt_format says, before anything is encoded or sampled. Few-shot examples are the first
    training examples with a CoT."""
    shots = list(islice(((e.question, task.target(e)) for e in train if e.cot), config.few_shot))
    if len(shots) < config.few_shot:
        raise ReftuneError(f"few_shot {config.few_shot}: the training split holds only {len(shots)} examples "
                           f"with a {config.style!r} CoT")
    task.prompt_format = choose_prompt_format(tokenizer_of(model_name or config.model), config.prompt_format,
                                              config.system_prompt, shots)


def load_model(config, device, tokenizer_texts: list[str] | None = None, name: str | None = None):
    """The policy named by config.model (or `name`, such as a checkpoint's model folder), with
    gradient checkpointing when a training stage's config asks for it."""
    tiny = TinySpec(hidden_size=config.tiny_hidden_size, num_layers=config.tiny_layers,
                    num_heads=config.tiny_heads, vocab_size=config.tiny_vocab_size)
    return load_policy(name or config.model, device=device, lora_rank=config.lora_rank,
                       lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout, tiny=tiny,
                       tokenizer_texts=tokenizer_texts, seed=config.seed,
                       gradient_checkpointing=getattr(config, "gradient_checkpointing", False))


def shard(items: list, accelerator) -> list:
    """This process's share of `items` (every num_processes-th, from its rank)."""
    return items[accelerator.process_index::accelerator.num_processes]


def epoch_order(num_examples: int, seed: int, epoch: int) -> list[int]:
    """The shuffled order of one epoch: a pure function of (seed, epoch), so resume needs no state."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(num_examples, generator=generator).tolist()


def epoch_slice(items: list, seed: int, step: int, steps_per_epoch: int, size: int) -> tuple[int, list]:
    """(epoch, the `size` items of `step`): each epoch a fresh order of `items`."""
    epoch, position = divmod(step, steps_per_epoch)
    order = epoch_order(len(items), seed, epoch)[position * size:(position + 1) * size]
    return epoch, [items[i] for i in order]


def plan_on_policy(config, num_questions: int, num_processes: int) -> tuple[int, int]:
    """(steps per epoch, total steps) of a stage that samples questions_per_step questions a step
    (ReFT, Online-ST), or a clear error."""
    if config.questions_per_step % num_processes or num_questions < config.questions_per_step:
        raise ReftuneError(f"questions_per_step {config.questions_per_step} must be a multiple of the "
                           f"{num_processes} processes and at most the {num_questions} training questions")
    steps_per_epoch = num_questions // config.questions_per_step
    total = steps_per_epoch * config.epochs
    return steps_per_epoch, min(total, config.max_steps or total)
