"""Questions per second of `reftune annotate --source model` against a `reftune serve` process on
loopback, at concurrency 1 and at concurrency 8, and the speedup: what batching concurrent requests
into one sampling call buys when the model is local.

Prints JSON. Each concurrency annotates the same questions into a fresh folder (no cache shared).

    python benchmarks/annotate.py [--model tiny] [--questions 16] [--samples 1] [--max-new-tokens 64]
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reftune.annotate.run import annotate
from reftune.config import AnnotateConfig
from reftune.tasks import get_task


def start_server(model: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "reftune.cli", "serve", model, "--port", "0",
                                "--served-name", "bench", "--max-batch", "32"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        found = re.search(r"at (http://127\.0\.0\.1:\d+/v1)", line)
        if found:
            return process, found.group(1)
    raise SystemExit(f"reftune serve {model} did not start")


def write_questions(folder: Path, count: int) -> Path:
    task = get_task("arithmetic")
    path = folder / "questions.json"
    path.write_text(json.dumps([{"item_id": f"arith_{i}", "question": e.question,
                                 "answer_value": task.format_answer(e.answer)}
                                for i, e in enumerate(task.load("train")[:count])]))
    return path


def time_annotation(url: str, data: Path, output: Path, prompt_file: Path, concurrency: int, args) -> dict:
    config = AnnotateConfig(task="arithmetic", data=str(data), output=str(output), source="model", endpoint=url,
                            api_model="bench", prompt_file=str(prompt_file), num_samples=args.samples,
                            max_new_tokens=args.max_new_tokens, temperature=1.0, concurrency=concurrency,
                            progress=False)
    started = time.perf_counter()
    summary = annotate(config)
    seconds = time.perf_counter() - started
    return {"concurrency": concurrency, "seconds": round(seconds, 2),
            "questions_per_s": round(summary["questions"] / seconds, 3), "requests": summary["requests"],
            "tokens_out": summary["tokens_out"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="what reftune serve loads (tiny, a folder, smollm2-135m)")
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--samples", type=int, default=1, help="CoTs requested per question")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    process, url = start_server(args.model)
    try:
        with tempfile.TemporaryDirectory() as temporary:
            folder = Path(temporary)
            data = write_questions(folder, args.questions)
            prompt_file = folder / "zero-shot.txt"
            prompt_file.write_text("")
            time_annotation(url, data, folder / "warm-up", prompt_file, 8, args)  # first calls pay for warm-up
            runs = [time_annotation(url, data, folder / f"c{c}", prompt_file, c, args) for c in (1, 8)]
    finally:
        process.terminate()
        process.wait(timeout=60)
    print(json.dumps({"benchmark": "annotate", "model": args.model, "questions": args.questions,
                      "samples_per_question": args.samples, "max_new_tokens": args.max_new_tokens,
                      "cpu": platform.processor() or platform.machine(), "runs": runs,
                      "speedup_8_over_1": round(runs[1]["questions_per_s"] / runs[0]["questions_per_s"], 2)},
                     indent=1))


if __name__ == "__main__":
    main()
