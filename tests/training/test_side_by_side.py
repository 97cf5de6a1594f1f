"""A stage in a second (spawned) process beside the body: its threads, its console, its errors."""
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from reftune.errors import ReftuneError
from reftune.training.side_by_side import beside


@dataclass(frozen=True)
class Job:
    """What a stage of this test does in the second process."""

    folder: str
    action: str = "work"


def stage(job: Job) -> None:
    """Runs in the spawned process (imported there by module name)."""
    print(f"threads {torch.get_num_threads()}", flush=True)
    if job.action == "fail":
        raise ReftuneError("the second stage's own message")
    if job.action == "bug":
        raise RuntimeError("a bug in the second stage")
    if job.action == "die":
        os._exit(3)
    if job.action == "sleep":
        time.sleep(60)
    Path(job.folder, "done").write_text("yes")


def test_the_stage_runs_beside_the_body_on_half_the_threads_and_logs_its_console(tmp_path):
    torch.set_num_threads(2)
    try:
        with beside(stage, Job(str(tmp_path)), tmp_path / "logs" / "second.log"):
            inside = torch.get_num_threads()
        assert inside == 1 and torch.get_num_threads() == 2  # restored after the block
    finally:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    assert (tmp_path / "done").read_text() == "yes"  # the block waited for it
    assert (tmp_path / "logs" / "second.log").read_text().splitlines() == ["threads 1"]


def test_the_stages_error_is_raised_after_the_body(tmp_path):
    ran = []
    with pytest.raises(ReftuneError, match="the second stage's own message"):
        with beside(stage, Job(str(tmp_path), "fail"), tmp_path / "second.log"):
            ran.append("body")
    assert ran == ["body"]


def test_a_bug_in_the_stage_is_raised_here_with_its_traceback_in_the_log(tmp_path):
    log = tmp_path / "second.log"
    with pytest.raises(RuntimeError, match="a bug in the second stage"):
        with beside(stage, Job(str(tmp_path), "bug"), log):
            pass
    assert "Traceback" in log.read_text() and 'raise RuntimeError("a bug in the second stage")' in log.read_text()


def test_a_stage_that_dies_without_a_word_is_one_line_naming_its_log(tmp_path):
    log = tmp_path / "second.log"
    with pytest.raises(ReftuneError, match=f"exit code 3 before finishing; its console is in {log}"):
        with beside(stage, Job(str(tmp_path), "die"), log):
            pass


def test_a_body_that_fails_stops_the_second_stage(tmp_path):
    started = time.monotonic()
    with pytest.raises(ValueError, match="the body's error"):
        with beside(stage, Job(str(tmp_path), "sleep"), tmp_path / "second.log"):
            raise ValueError("the body's error")
    assert time.monotonic() - started < 30  # not the 60 s the stage would sleep
