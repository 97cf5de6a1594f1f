"""The data a stage trains on and the order it sees it in: the task's examples of a split (or a slice of
one), the prompt layout for the model's tokenizer, each process's share, and each epoch's order as a
pure function of the seed, so a resumed run needs no saved state to continue it."""
from __future__ import annotations

import re
from itertools import islice

import torch

from reftune.config import parse_task_options
from reftune.errors import ReftuneError
from reftune.model.loading import tokenizer_of
from reftune.tasks import get_task
from reftune.tasks.prompting import choose_prompt_format

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
