"""kill -9 of a live `reftune annotate`, then the same command again: nothing lost, nothing twice."""
import json
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from reftune.annotate.journal import replay
from annotate_fixtures import arithmetic_data, empty_prompt_file, fake_endpoint  # noqa: F401 (fixtures)


def command(data, output, endpoint, prompt_file):
    return [sys.executable, "-m", "reftune.cli", "annotate", "--task", "arithmetic", "--data", str(data),
            "--output", str(output), "--source", "model", "--endpoint", endpoint.url, "--api-model", "fake",
            "--prompt-file", str(prompt_file), "--num-samples", "2", "--concurrency", "2", "--no-progress"]


def verdict_lines(output) -> int:
    journal = output / "journal.jsonl"
    return journal.read_text().count('"event": "verified"') if journal.exists() else 0


@pytest.mark.slow
def test_kill_9_mid_run_then_the_same_command_gives_an_uninterrupted_runs_questions(tmp_path, arithmetic_data,
                                                                                    fake_endpoint, empty_prompt_file):
    data, answers = arithmetic_data
    fake_endpoint.behaviour.delay = 0.1
    subprocess.run(command(data, tmp_path / "straight", fake_endpoint, empty_prompt_file), check=True, timeout=120,
                   capture_output=True)

    killed = subprocess.Popen(command(data, tmp_path / "killed", fake_endpoint, empty_prompt_file),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while verdict_lines(tmp_path / "killed") < 5 and time.monotonic() < deadline and killed.poll() is None:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    assert killed.returncode == -signal.SIGKILL
    interrupted = replay(tmp_path / "killed" / "journal.jsonl")
    assert 0 < len(interrupted.verdicts) < len(answers)  # killed mid-run
    assert not (tmp_path / "killed" / "annotated.json").exists()

    subprocess.run(command(data, tmp_path / "killed", fake_endpoint, empty_prompt_file), check=True, timeout=120,
                   capture_output=True)
    straight = json.loads((tmp_path / "straight" / "annotated.json").read_text())
    resumed = json.loads((tmp_path / "killed" / "annotated.json").read_text())
    assert [r["item_id"] for r in resumed] == [r["item_id"] for r in straight] == [f"arith_{i}" for i in range(12)]
    assert [r["answer_cot"] for r in resumed] == [r["answer_cot"] for r in straight]
    events = [json.loads(line) for line in (tmp_path / "killed" / "journal.jsonl").read_text().splitlines() if line]
    verdicts = Counter((e["item_id"], e["sample_index"]) for e in events if e["event"] in ("verified", "rejected"))
    assert max(verdicts.values()) == 1  # no sample was verified twice
    assert sum(1 for e in events if e["event"] == "response") <= 2 * len(answers) + 2  # at most the requests in flight


def test_a_narrower_rerun_keeps_every_row_already_made(tmp_path, shared_data):
    """--limit 10 on a folder that annotated 40 questions: annotated.json still holds all 40."""
    from reftune.cli import main

    def run(limit: int) -> list[dict]:
        assert main(["annotate", "--task", "gsm8k", "--data", str(shared_data / "gsm8k" / "test.jsonl"), "--output",
                     str(tmp_path / "out"), "--limit", str(limit), "--no-progress"]) == 0
        return json.loads((tmp_path / "out" / "annotated.json").read_text())

    wide = run(40)
    assert len(wide) > 30
    assert run(10) == wide
    summary = json.loads((tmp_path / "out" / "annotate.json").read_text())
    assert summary["questions"] == 40 and summary["cots"] == len(wide)
    rejects = (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()
    assert len(rejects) == 40 - len(wide)
