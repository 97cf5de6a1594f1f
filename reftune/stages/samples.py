"""CoTs sampled for a split's questions, shared by the stages that learn from them: Offline-ST keeps
the correct ones, the verifier learns to tell right from wrong, `reftune sample` writes them.

A samples file is JSONL, one question per line, as `reftune sample` writes it: id, question, gold,
samples, answers, rewards, correct, finished, vote. Reading one re-scores the samples with the task,
so a file from another tool (holding at least id and samples) is scored the same way.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from reftune.errors import ReftuneError
from reftune.rewards import score_answer
from reftune.rollout import SamplingParams
from reftune.stages.evaluate import QuestionSamples, sample_questions
from reftune.tasks import Example, Task

SAMPLES_FILE = "samples.jsonl"


def sample_split(accelerator, task: Task, model, tokenizer, examples: list[Example], params: SamplingParams,
                 batch_size: int, seed: int, show_progress: bool) -> list[QuestionSamples]:
    """Every process samples its share of `examples`; all get every result back, in example order."""
    from accelerate.utils import gather_object

    from reftune.stages.common import shard

    generator = torch.Generator(device=accelerator.device).manual_seed(seed + accelerator.process_index)
    mine = sample_questions(task, model, tokenizer, shard(examples, accelerator), params, batch_size, generator,
                            show_progress=show_progress)
    position = {example.id: index for index, example in enumerate(examples)}
    return sorted(gather_object(mine), key=lambda result: position[result.example.id])


def write_samples(path: Path, task: Task, results: list[QuestionSamples]) -> None:
    with open(path, "w") as out:
        for result in results:
            out.write(json.dumps(result.to_json(task)) + "\n")


def read_samples(path: str | Path, task: Task, examples: list[Example]) -> list[QuestionSamples]:
    """The samples in `path` for `examples` (matched by id), re-scored with the task's reward."""
    path = Path(path)
    if not path.is_file():
        raise ReftuneError(f"samples file {path} does not exist")
    by_id = {example.id: example for example in examples}
    results = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            example, completions = by_id.get(str(row["id"])), [str(text) for text in row["samples"]]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ReftuneError(f"{path} line {number}: not a samples row with id and samples ({exc})") from None
        if example is None:
            continue  # a question outside the split (or outside max_train_examples)
        answers = task.extract_answers(completions)
        results.append(QuestionSamples(example, completions, answers,
                                       [score_answer(task, answer, example.answer) for answer in answers],
                                       list(row.get("finished", [True] * len(completions)))))
    if not results:
        raise ReftuneError(f"{path} holds no samples for the {len(examples)} questions of this split "
                           f"(ids such as {examples[0].id!r}): was it sampled from another split or task?")
    return results


def training_samples(accelerator, config, task: Task, examples: list[Example], saved: Path,
                     given: str | None, num_samples: int) -> list[QuestionSamples]:
    """The file `given` when there is one; else the samples an interrupted run saved to `saved`, when
    resuming; else num_samples CoTs per question from config.sampler, saved to `saved`."""
    from reftune.models import load_policy

    if given:
        return read_samples(given, task, examples)
    if config.resume and saved.exists():
        return read_samples(saved, task, examples)
    sampler = load_policy(config.sampler, device=accelerator.device)
    params = SamplingParams(temperature=config.sample_temperature, max_new_tokens=config.sample_max_new_tokens,
                            num_samples=num_samples)
    results = sample_split(accelerator, task, sampler.model, sampler.tokenizer, examples, params,
                           config.sample_batch_size, config.seed, config.progress and accelerator.is_main_process)
    if accelerator.is_main_process:
        write_samples(saved, task, results)
    accelerator.wait_for_everyone()
    return results


def normalize_cot(text: str) -> str:
    """The form two CoTs are compared in when deduplicating: whitespace runs count as one space.

    >>> normalize_cot(" 2 + 3 = 5\\n\\nThe answer is 5 ") == normalize_cot("2 + 3 = 5 The answer is 5")
    True
    """
    return " ".join(text.split())


def distinct(completions: list[str]) -> list[int]:
    """Indices of the first occurrence of each distinct completion, in order.

    >>> distinct(["a b", "c", "a  b", "d", "c"])
    [0, 1, 3]
    """
    seen, keep = set(), []
    for index, text in enumerate(completions):
        key = normalize_cot(text)
        if key not in seen:
            seen.add(key)
            keep.append(index)
    return keep
