"""Offline self-training (the paper's Offline-ST baseline): sample CoTs from the warm-up model once,
keep the correct ones, and SFT the base model on them together with the gold CoTs.

1. sample num_samples CoTs per training question from --sampler (the warm-up checkpoint), or read
   them from --samples; they are saved as samples.jsonl in the run folder;
2. per question keep the correct ones (reward 1.0), deduplicated, up to keep_per_question, and add
   the gold CoT;
3. SFT --model (the base model, as in the paper) on the result, choosing the best epoch on dev.
"""
from __future__ import annotations

import json

from reftune.config import OfflineSTConfig
from reftune.errors import ReftuneError
from reftune.stages.common import build_accelerator, load_examples, output_folder
from reftune.stages.samples import SAMPLES_FILE, distinct, normalize_cot, training_samples
from reftune.stages.sft import sft


def self_training_pairs(task, results, keep_per_question: int) -> tuple[list[tuple[str, str]], dict]:
    """(prompt, target) pairs: each question's gold CoT, then up to keep_per_question distinct correct
    samples that differ from it. Also counts for the summary."""
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


def offline_st(config: OfflineSTConfig) -> dict:
    """Sample (or read) CoTs, build the self-training set, SFT on it. Returns the SFT summary plus
    the data counts."""
    # 1. CoTs from the warm-up model, kept in the run folder (a resumed run reads them back)
    accelerator = build_accelerator()
    folder = output_folder(config, "offline-st")
    task, train = load_examples(config, config.train_split, config.max_train_examples)
    results = training_samples(accelerator, config, task, train, folder / SAMPLES_FILE, config.samples,
                               config.num_samples)

    # 2. correct, distinct, at most keep_per_question per question, plus the gold CoT
    pairs, counts = self_training_pairs(task, results, config.keep_per_question)
    if not pairs:
        raise ReftuneError("no training data: no question has a gold CoT or a correct sampled one")
    if accelerator.is_main_process and config.progress:
        print(f"reftune offline-st: {counts['sampled_cots_kept']} sampled CoTs kept for "
              f"{counts['questions_with_a_kept_sample']} of {counts['questions']} questions "
              f"(samples right: {counts['sample_accuracy']:.1%}), plus {counts['gold_cots']} gold CoTs", flush=True)

    # 3. SFT on them
    summary = {**sft(config, pairs=pairs, stage="offline-st"), "data": counts}
    if accelerator.is_main_process:
        (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
