"""Ctrl-C during `reftune annotate`: what arrived is kept, the files are written, and it says how to go on."""
import json
import signal
import subprocess
import sys
import time

import pytest
from annotate_fixtures import arithmetic_data, empty_prompt_file, fake_endpoint  # noqa: F401 (fixtures)


@pytest.mark.slow
def test_ctrl_c_keeps_what_arrived_writes_the_files_and_says_how_to_continue(tmp_path, arithmetic_data,
                                                                           fake_endpoint, empty_prompt_file):
    data, answers = arithmetic_data
    fake_endpoint.behaviour.delay = 0.2
    output = tmp_path / "out"
    command = [sys.executable, "-m", "reftune.cli", "annotate", "--task", "arithmetic", "--data", str(data),
               "--output", str(output), "--source", "model", "--endpoint", fake_endpoint.url, "--api-model", "fake",
               "--prompt-file", str(empty_prompt_file), "--num-samples", "1", "--concurrency", "1", "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    journal = output / "journal.jsonl"
    while time.monotonic() < deadline and (not journal.exists() or journal.read_text().count('"verified"') < 3):
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Run the same command again to continue" in out and "Traceback" not in err
    kept = json.loads((output / "annotated.json").read_text())
    assert 3 <= len(kept) < len(answers)
    assert json.loads((output / "annotate.json").read_text())["covered"] == len(kept)
    assert subprocess.run(command, capture_output=True, timeout=120).returncode == 0
    assert len(json.loads((output / "annotated.json").read_text())) == len(answers)
