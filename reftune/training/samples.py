"""Sampled CoTs of a split's questions, shared by every stage that samples: the dev check of training,
`reftune eval` / `sample`, Offline-ST's self-training data, the verifier's labelled samples.

A samples file is JSONL, one question per line, as `reftune sample` writes it: id, question, gold,
samples, answers, rewards, correct, finished, vote. Reading one re-scores the samples with the task,
so a file from another tool (holding at least id and samples) is scored the same way.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from reftune.errors import ReftuneError
from reftune.generation.rollout import SamplingParams, sample
from reftune.model.heads import load_verifier
from reftune.model.loading import load_policy
from reftune.scoring.rewards import CORRECT_REWARD, score_answer
from reftune.scoring.selection import majority_vote, rerank
from reftune.tasks import Example, Task
from reftune.training.batches import collate, encode_pairs
from reftune.training.data import shard
from reftune.training.tracking import progress_bar, strict_json

SAMPLES_FILE = "samples.jsonl"


@dataclass(frozen=True)
class QuestionSamples:
    """Everything sampled for one question, in sample order."""

    example: Example
    completions: list[str]
    answers: list            # extracted answer per completion, None where there is none
    rewards: list[float]     # the ReFT reward per completion
    finished: list[bool] = field(default_factory=list)  # False: cut at max_new_tokens
    scores: list[float] = field(default_factory=list)   # the verifier's P(correct), when reranking

    @property
    def correct(self) -> list[bool]:
        return [reward == CORRECT_REWARD for reward in self.rewards]

    def to_json(self, task: Task) -> dict:
        voted = majority_vote(self.answers, task.is_correct)
        row = {"id": self.example.id, "question": self.example.question, "gold": self.example.answer,
               "samples": self.completions, "answers": self.answers, "rewards": self.rewards,
               "correct": self.correct, "finished": self.finished, "vote": voted,
               "vote_correct": voted is not None and task.is_correct(voted, self.example.answer)}
        if self.scores:
            picked = rerank(self.answers, self.scores)
            row.update(verifier_scores=self.scores, rerank=picked,
                       rerank_correct=picked is not None and task.is_correct(picked, self.example.answer))
        return row


def sample_questions(task: Task, model, tokenizer, examples: list[Example], params: SamplingParams,
                     batch_size: int, generator: torch.Generator | None = None,
                     show_progress: bool = False) -> list[QuestionSamples]:
    """params.num_samples completions per example, scored with the ReFT reward."""
    results = []
    bar = progress_bar(len(examples), "sampling", show_progress)
    for start in range(0, len(examples), batch_size):
        batch = examples[start:start + batch_size]
        rollout = sample(model, tokenizer, [task.prompt(e) for e in batch], params, generator)
        answers = task.extract_answers(rollout.texts)  # one batched sandbox call for P-CoT
        k = params.num_samples
        for i, example in enumerate(batch):
            rows = slice(i * k, (i + 1) * k)
            results.append(QuestionSamples(
                example, rollout.texts[rows], answers[rows],
                [score_answer(task, answer, example.answer) for answer in answers[rows]],
                rollout.finished[rows].tolist()))
        bar.update(len(batch))
    bar.close()
    return results


def greedy_accuracy(accelerator, task: Task, model, tokenizer, examples: list[Example],
                    max_new_tokens: int, batch_size: int, show_progress: bool = False) -> float:
    """Top-1 accuracy on `examples`, each process decoding its share (the dev check of training)."""
    params = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens)
    mine = shard(examples, accelerator)
    results = sample_questions(task, model, tokenizer, mine, params, batch_size, show_progress=show_progress)
    counts = torch.tensor([sum(r.correct[0] for r in results), len(results)], device=accelerator.device)
    correct, total = accelerator.reduce(counts, reduction="sum").tolist()
    return correct / max(total, 1)


def sample_split(accelerator, task: Task, model, tokenizer, examples: list[Example], params: SamplingParams,
                 batch_size: int, seed: int, show_progress: bool) -> list[QuestionSamples]:
    """Every process samples its share of `examples`; all get every result back, in example order."""
    from accelerate.utils import gather_object

    generator = torch.Generator(device=accelerator.device).manual_seed(seed + accelerator.process_index)
    mine = sample_questions(task, model, tokenizer, shard(examples, accelerator), params, batch_size, generator,
                            show_progress=show_progress)
    position = {example.id: index for index, example in enumerate(examples)}
    return sorted(gather_object(mine), key=lambda result: position[result.example.id])


def samples_name(split: str) -> str:
    """The file a split's samples are written to, named by the split without its slice (brackets and
    colons in a file name trip shells and globs; summary.json keeps the slice).

    >>> samples_name("train[:-20]"), samples_name("test")
    ('train-samples.jsonl', 'test-samples.jsonl')
    """
    return f"{split.split('[')[0]}-samples.jsonl"


def write_samples(path: Path, task: Task, results: list[QuestionSamples]) -> None:
    scratch = path.with_name(f".{path.name}.partial")  # a later run trusts this file: never half of it
    with open(scratch, "w") as out:
        for result in results:
            out.write(strict_json(result.to_json(task)) + "\n")
    scratch.replace(path)


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


def self_training_pairs(task, results: list[QuestionSamples], keep_per_question: int) -> tuple[list[tuple[str, str]], dict]:
    """Offline-ST's data: (prompt, target) pairs, each question's gold CoT, then up to keep_per_question
    distinct correct samples that differ from it. Also counts for the summary."""
    pairs, kept_counts = [], []
    for result in results:
        prompt = task.prompt(result.example)
        gold = task.target(result.example) if result.example.cot else None
        seen = {normalize_cot(gold)} if gold else set()
        kept = []
        for index in distinct(result.completions):
            text = result.completions[index]
            if result.correct[index] and normalize_cot(text) not in seen and len(kept) < keep_per_question:
                kept.append(text)
        pairs += ([(prompt, gold)] if gold else []) + [(prompt, text) for text in kept]
        kept_counts.append(len(kept))
    counts = {"questions": len(results), "gold_cots": sum(bool(r.example.cot) for r in results),
              "sampled_cots_kept": sum(kept_counts),
              "questions_with_a_kept_sample": sum(count > 0 for count in kept_counts),
              "sample_accuracy": sum(sum(r.correct) for r in results) / max(1, sum(len(r.correct) for r in results))}
    return pairs, counts


@torch.no_grad()
def verifier_scores(verifier, tokenizer, pairs: list[tuple[str, str]], batch_size: int) -> list[float]:
    """P(correct) of each (prompt, completion) under a verifier (reftune.model.heads.Verifier)."""
    device = next(verifier.parameters()).device
    encoded, _ = encode_pairs(tokenizer, pairs, max_length=10**9)
    scores = []
    for start in range(0, len(encoded), batch_size):
        batch = collate(encoded[start:start + batch_size], tokenizer.pad_token_id, device)
        scores += torch.sigmoid(verifier(batch["input_ids"], batch["attention_mask"])).tolist()
    return scores


def add_verifier_scores(accelerator, task: Task, verifier_folder: str, results: list[QuestionSamples],
                        batch_size: int) -> list[QuestionSamples]:
    """The results with each sample's P(correct) under the verifier (each process scores its share)."""
    from accelerate.utils import gather_object

    verifier, tokenizer = load_verifier(verifier_folder, accelerator.device)
    mine = shard(list(enumerate(results)), accelerator)
    scored = [(index, replace(result, scores=verifier_scores(
        verifier, tokenizer, [(task.prompt(result.example), c) for c in result.completions], batch_size)))
        for index, result in mine]
    return [result for _, result in sorted(gather_object(scored), key=lambda pair: pair[0])]
