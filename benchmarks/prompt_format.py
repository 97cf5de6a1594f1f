"""Zero-shot, plain layout against the chat template: how often an instruct model ends with the answer
trigger, and how often it is right. Runs `reftune eval` (greedy) on the first N GSM8K test questions
with --prompt-format plain and chat, then reads the written samples.

    {"model", "questions", "plain": {"trigger_rate", "no_answer_rate", "top1", "seconds"}, "chat": {...}}

trigger_rate: the share of completions that contain "Therefore, the answer is" (what the reward reads);
no_answer_rate: the share from which no number could be read after it.

    python benchmarks/prompt_format.py [--model smollm2-135m] [--questions 100] [--data ../shared/data/gsm8k]
"""
from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

from reftune import EvalConfig, evaluate

TRIGGER = re.compile(r"the answer is", re.IGNORECASE)


def measure(model: str, data: str, questions: int, prompt_format: str, max_new_tokens: int, folder: Path) -> dict:
    summary = evaluate(EvalConfig(task="gsm8k", data=data, split="test", limit=questions, model=model,
                                  prompt_format=prompt_format, max_new_tokens=max_new_tokens, progress=False,
                                  report_to="jsonl", output=str(folder / prompt_format)))
    rows = [json.loads(line) for line in (folder / prompt_format / "test-samples.jsonl").open()]
    completions = [completion for row in rows for completion in row["samples"]]
    return {"trigger_rate": round(sum(bool(TRIGGER.search(c)) for c in completions) / len(completions), 3),
            "no_answer_rate": round(summary.no_answer_rate, 3), "top1": round(summary.top1_accuracy, 3),
            "seconds": summary.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/gsm8k"))
    parser.add_argument("--max-new-tokens", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        results = {fmt: measure(args.model, args.data, args.questions, fmt, args.max_new_tokens, Path(scratch))
                   for fmt in ("plain", "chat")}
    print(json.dumps({"model": args.model, "questions": args.questions, **results}, indent=1))


if __name__ == "__main__":
    main()
