"""Generated tokens per second: reftune's sampler (reftune.generation.rollout.sample) against a plain loop of
`model.generate` on the same prompts, at batch sizes 1 / 8 / 32, on `tiny` and `smollm2-135m`.

Both decode greedily with the same max_new_tokens, so both produce the same tokens (checked). A
row's generated tokens count up to and including EOS. A `samples` scenario adds what RL and voting
do: K samples per prompt at temperature 1.

`generate` runs the model as transformers loads it (torch's nn.Linear). reftune runs it as
`load_policy` loads it: on CPUs where oneDNN's fp32 products are faster (`reftune/cpu_linear.py`),
its linear layers use them. To show how much of the speedup is the sampler and how much the
kernels, `generate` is also timed on reftune's layers (`*_same_kernels`).

Prints JSON. Target (models issue): reftune not slower than model.generate.

    python benchmarks/rollout.py [--models tiny smollm2-135m] [--batch-sizes 1 8 32] [--max-new-tokens 64]
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from reftune.generation.rollout import SamplingParams, sample
from reftune.model.cpu_linear import set_fast_cpu_linear, wanted
from reftune.model.loading import TINY, load_policy
from reftune.tasks import get_task


def prompts_for(count: int) -> list[str]:
    task = get_task("arithmetic")
    return [task.prompt(example) for example in task.load("test")[:count]]


def timed(function, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return best, result


def generated_tokens(rows: torch.Tensor, eos_id: int, pad_id: int) -> int:
    """Tokens up to and including the first EOS of each row (rows: (B, T) of generated ids)."""
    total = 0
    for row in rows.tolist():
        total += row.index(eos_id) + 1 if eos_id in row else sum(token != pad_id for token in row)
    return total


def run_generate(model, tokenizer, prompts, max_new_tokens):
    encoded = tokenizer(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return out[:, encoded["input_ids"].size(1):]


def with_torch_linear(model, function):
    """Run `function` with the model's linear layers as transformers has them, then restore."""
    changed = set_fast_cpu_linear(model, fast=False)
    try:
        return function()
    finally:
        if changed:
            set_fast_cpu_linear(model)


def compare(policy, batch_size: int, max_new_tokens: int, repeats: int) -> dict:
    model, tokenizer = policy.model, policy.tokenizer
    prompts = prompts_for(batch_size)
    params = SamplingParams(temperature=0, max_new_tokens=max_new_tokens)
    ours_s, rollout = timed(lambda: sample(model, tokenizer, prompts, params), repeats)
    generate = lambda: run_generate(model, tokenizer, prompts, max_new_tokens)  # noqa: E731
    theirs_s, generated = with_torch_linear(model, lambda: timed(generate, repeats))
    same_kernels_s, _ = timed(generate, repeats)
    ours_tokens = rollout.num_generated_tokens
    theirs_tokens = generated_tokens(generated, tokenizer.eos_token_id, tokenizer.pad_token_id)
    theirs_texts = [tokenizer.decode(row, skip_special_tokens=True) for row in generated]
    return {"batch_size": batch_size, "generated_tokens": ours_tokens,
            "same_outputs": rollout.texts == theirs_texts and ours_tokens == theirs_tokens,
            "reftune_tokens_per_s": round(ours_tokens / ours_s, 1),
            "generate_tokens_per_s": round(theirs_tokens / theirs_s, 1),
            "speedup": round((ours_tokens / ours_s) / (theirs_tokens / theirs_s), 2),
            "generate_same_kernels_tokens_per_s": round(theirs_tokens / same_kernels_s, 1),
            "speedup_same_kernels": round(same_kernels_s / ours_s * ours_tokens / theirs_tokens, 2)}


def compare_samples(policy, prompts_count: int, k: int, max_new_tokens: int, repeats: int) -> dict:
    """K samples per prompt at temperature 1: reftune prefills each prompt once; generate() is
    given each prompt K times (num_return_sequences does the same repetition inside)."""
    model, tokenizer = policy.model, policy.tokenizer
    prompts = prompts_for(prompts_count)
    params = SamplingParams(temperature=1.0, max_new_tokens=max_new_tokens, num_samples=k)
    ours_s, rollout = timed(lambda: sample(model, tokenizer, prompts, params,
                                           torch.Generator().manual_seed(0)), repeats)
    encoded = tokenizer(prompts, padding=True, return_tensors="pt")

    def generate():
        with torch.no_grad():
            return model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=True, top_k=0,
                                  num_return_sequences=k, pad_token_id=tokenizer.pad_token_id)
    theirs_s, generated = with_torch_linear(model, lambda: timed(generate, repeats))
    theirs_tokens = generated_tokens(generated[:, encoded["input_ids"].size(1):], tokenizer.eos_token_id,
                                     tokenizer.pad_token_id)
    return {"prompts": prompts_count, "samples_per_prompt": k,
            "reftune_tokens_per_s": round(rollout.num_generated_tokens / ours_s, 1),
            "generate_tokens_per_s": round(theirs_tokens / theirs_s, 1),
            "speedup": round((rollout.num_generated_tokens / ours_s) / (theirs_tokens / theirs_s), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=[TINY, "smollm2-135m"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    results = {"machine": {"cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
                           "torch": torch.__version__, "onednn_linear": wanted()},
               "max_new_tokens": args.max_new_tokens, "models": {}}
    for name in args.models:
        texts = prompts_for(200) if name == TINY else None
        policy = load_policy(name, tokenizer_texts=texts)
        rows = [compare(policy, size, args.max_new_tokens, args.repeats) for size in args.batch_sizes]
        rows.append(compare_samples(policy, 8, 4, args.max_new_tokens, args.repeats))
        results["models"][name] = rows
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
