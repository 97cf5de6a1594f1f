"""A `reftune serve` process over the tiny model on loopback, and arithmetic questions for it: what the
Suggest tests ask (imported by them)."""
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from reftune.tasks import get_task


def start_tiny_endpoint() -> tuple[subprocess.Popen, str]:
    """The server process and the URL it printed (its model is `tiny`, random weights)."""
    process = subprocess.Popen([sys.executable, "-m", "reftune.cli", "serve", "tiny", "--port", "0",
                                "--tiny-task", "arithmetic"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline, lines = time.monotonic() + 120, []
    while time.monotonic() < deadline and process.poll() is None:
        lines.append(process.stdout.readline())
        found = re.search(r"at (http://127\.0\.0\.1:\d+/v1)", lines[-1])
        if found:
            return process, found.group(1)
    process.kill()
    raise AssertionError("reftune serve did not print its URL:\n" + "".join(lines))


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)


def arithmetic_questions(folder: Path) -> tuple[Path, Path]:
    """A ReFT-format file of three arithmetic questions, the first without a CoT, and an empty prompt
    file: the tiny model reads the task's prompt alone (the built-in few-shot examples pass its context)."""
    task = get_task("arithmetic")
    rows = [{"item_id": f"arithmetic_{n}", "question": e.question, "answer_value": task.format_answer(e.answer),
             **({"answer_cot": e.cot} if n else {})} for n, e in enumerate(task.load("train")[:3])]
    data, prompt_file = folder / "questions.json", folder / "zero-shot.txt"
    data.write_text(json.dumps(rows))
    prompt_file.write_text("")
    return data, prompt_file
