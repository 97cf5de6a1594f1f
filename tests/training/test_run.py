"""The run record every training stage keeps: nothing is lost, overwritten or misrecorded."""
import json
import subprocess
import sys
import textwrap

import pytest
import yaml

from reftune.cli import main
from reftune.config import EvalConfig, SFTConfig
from reftune.errors import ReftuneError
from reftune.stages.evaluate import evaluate
from reftune.stages.sft import sft
from reftune.training.checkpoint import TrainerState, complete_checkpoints
from reftune.training.run import changed_options

TINY = dict(task="arithmetic", model="tiny", max_train_examples=8, eval_limit=2, eval_max_new_tokens=8,
            batch_size=8, micro_batch_size=8, report_to="jsonl", progress=False)


def test_resume_refuses_a_changed_config_naming_each_option_and_keeps_the_saved_one(tmp_path):
    sft(SFTConfig(**TINY, max_steps=2, eval_every=2, output=str(tmp_path)))
    saved = (tmp_path / "config.yaml").read_text()
    with pytest.raises(ReftuneError) as refused:
        sft(SFTConfig(**TINY, max_steps=4, learning_rate=1e-3, tiny_hidden_size=128, resume=True, output=str(tmp_path)))
    assert "learning_rate: 1e-05 -> 0.001" in str(refused.value) and "tiny_hidden_size: 64 -> 128" in str(refused.value)
    with pytest.raises(ReftuneError, match="task: 'arithmetic' -> 'gsm8k'"):
        sft(SFTConfig(**{**TINY, "task": "gsm8k"}, max_steps=4, resume=True, output=str(tmp_path)))
    assert (tmp_path / "config.yaml").read_text() == saved
    assert [c.name for c in complete_checkpoints(tmp_path)] == ["step-000002"]


def test_resume_may_lengthen_the_run_and_records_what_it_used(tmp_path):
    sft(SFTConfig(**TINY, max_steps=2, eval_every=2, output=str(tmp_path)))
    summary = sft(SFTConfig(**TINY, max_steps=3, eval_every=3, resume=True, output=str(tmp_path)))
    assert summary.steps == 3
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["max_steps"] == 3


def test_changed_options_ignores_what_may_change_on_resume():
    saved = {"max_steps": 2, "eval_every": 1, "progress": True, "report_to": "jsonl", "seed": 0}
    assert changed_options(saved, SFTConfig(max_steps=9, eval_every=3, progress=False, report_to="jsonl,tensorboard")) == {}
    assert changed_options(saved, SFTConfig(seed=1)) == {"seed": (0, 1)}


def test_times_add_up_across_resumes(tmp_path):
    sft(SFTConfig(**TINY, max_steps=2, eval_every=2, output=str(tmp_path)))
    before = TrainerState.read(complete_checkpoints(tmp_path)[-1]).seconds
    summary = sft(SFTConfig(**TINY, max_steps=3, eval_every=3, resume=True, output=str(tmp_path)))
    assert before > 0 and summary.seconds > before


def test_no_command_replaces_what_another_run_wrote(tmp_path):
    run = tmp_path / "run"
    sft(SFTConfig(**TINY, max_steps=1, eval_every=1, output=str(run)))
    written = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    with pytest.raises(ReftuneError, match="already holds a `reftune sft` run"):
        evaluate(EvalConfig(task="arithmetic", model=str(run / "best"), limit=2, max_new_tokens=8,
                            progress=False, output=str(run)))
    eval_folder = tmp_path / "eval"
    evaluate(EvalConfig(task="arithmetic", model=str(run / "best"), limit=2, max_new_tokens=8, progress=False,
                        output=str(eval_folder)))
    eval_summary = (eval_folder / "summary.json").read_text()
    with pytest.raises(ReftuneError, match="already holds a `reftune eval` run"):
        sft(SFTConfig(**TINY, max_steps=1, output=str(eval_folder)))
    with pytest.raises(ReftuneError, match="holds a `reftune eval` run, not a `reftune sft` one"):
        sft(SFTConfig(**TINY, max_steps=1, resume=True, output=str(eval_folder)))
    assert (eval_folder / "summary.json").read_text() == eval_summary
    assert all(p.read_bytes() == content for p, content in written.items())


def test_a_run_that_never_trained_leaves_its_folder_free_for_a_retry(tmp_path):
    with pytest.raises(ReftuneError, match="multiple of micro_batch_size"):
        sft(SFTConfig(**{**TINY, "batch_size": 3}, max_steps=1, output=str(tmp_path)))
    assert sft(SFTConfig(**TINY, max_steps=1, eval_every=1, output=str(tmp_path))).steps == 1


def test_a_second_process_on_a_locked_folder_is_refused_naming_the_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from reftune.training.folders import hold_lock
        hold_lock(Path({str(tmp_path)!r}))
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ReftuneError, match=f"in use by another reftune process \\(pid {holder.pid}\\)"):
            sft(SFTConfig(**TINY, max_steps=1, output=str(tmp_path)))
    finally:
        holder.kill()
        holder.wait()
    # The OS released the dead holder's lock: the folder is usable again.
    assert sft(SFTConfig(**TINY, max_steps=1, eval_every=1, output=str(tmp_path))).steps == 1


def test_a_partial_checkpoint_is_never_picked(tmp_path):
    sft(SFTConfig(**TINY, max_steps=1, eval_every=1, keep_checkpoints=5, output=str(tmp_path)))
    partial = tmp_path / "checkpoints" / ".step-000002.partial"
    (partial / "model").mkdir(parents=True)
    (partial / "trainer_state.json").write_text(json.dumps({"step": 2}))
    assert [c.name for c in complete_checkpoints(tmp_path)] == ["step-000001"]
    assert sft(SFTConfig(**TINY, max_steps=2, eval_every=1, keep_checkpoints=5, resume=True,
                         output=str(tmp_path))).steps == 2


def test_a_checkpoint_that_cannot_be_written_leaves_the_previous_one_intact(tmp_path):
    sft(SFTConfig(**TINY, max_steps=1, eval_every=1, keep_checkpoints=5, output=str(tmp_path)))
    # A plain file where the next checkpoint's scratch folder must go: a real OSError when saving.
    (tmp_path / "checkpoints" / ".step-000002.partial").write_text("in the way")
    with pytest.raises(ReftuneError, match="could not write the checkpoint .*step-000002.*step-000001, is intact"):
        sft(SFTConfig(**TINY, max_steps=2, eval_every=1, keep_checkpoints=5, resume=True, output=str(tmp_path)))
    (tmp_path / "checkpoints" / ".step-000002.partial").unlink()
    assert [c.name for c in complete_checkpoints(tmp_path)] == ["step-000001"]
    assert sft(SFTConfig(**TINY, max_steps=2, eval_every=1, keep_checkpoints=5, resume=True,
                         output=str(tmp_path))).steps == 2


@pytest.mark.parametrize("options, name", [({"max_steps": 0}, "max_steps"), ({"eval_limit": 0}, "eval_limit"),
                                           ({"max_train_examples": 0}, "max_train_examples"),
                                           ({"max_seconds": 0}, "max_seconds")])
def test_zero_is_refused_instead_of_meaning_unlimited(options, name):
    with pytest.raises(ReftuneError, match=f"{name} must be >= 1 .*leave it out for no limit"):
        SFTConfig(**options)


def test_eval_limit_zero_is_refused():
    with pytest.raises(ReftuneError, match="limit must be >= 1"):
        EvalConfig(limit=0)


def test_yaml_numbers_in_every_spelling(tmp_path, capsys):
    from reftune.config.options import read_yaml_options

    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 1e-3\nmax_steps: '4'\nprogress: 'no'\nweight_decay: 0\n")
    assert read_yaml_options(path, SFTConfig) == {"learning_rate": 0.001, "max_steps": 4, "progress": False,
                                                  "weight_decay": 0.0}
    path.write_text("max_steps: 2.5\n")
    assert main(["sft", "--config", str(path)]) == 2
    assert "max_steps should be int, got 2.5" in capsys.readouterr().err


def test_an_output_under_a_regular_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["sft", "--output", str(tmp_path / "file" / "run"), "--max-steps", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot use --output" in err[0] and "Not a directory" in err[0]


def test_version_and_the_bare_command_list_the_commands(capsys):
    from reftune import __version__

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"reftune {__version__}"
    assert main([]) == 2
    listed = capsys.readouterr().out
    assert all(command in listed for command in ("demo", "sft", "rl", "eval", "compare", "check"))


@pytest.mark.slow
def test_the_first_ctrl_c_checkpoints_and_prints_the_resume_command(tmp_path):
    """SIGINT to a live SFT process: it finishes the step, writes a checkpoint, says how to go on."""
    import signal
    import time

    command = [sys.executable, "-m", "reftune.cli", "sft", "--task", "arithmetic", "--max-train-examples", "8",
               "--batch-size", "8", "--micro-batch-size", "8", "--eval-limit", "2", "--eval-max-new-tokens", "8",
               "--max-steps", "100000", "--epochs", "100000", "--eval-every", "100000", "--no-progress",
               "--report-to", "jsonl", "--output", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (tmp_path / "metrics.jsonl").exists() or not (tmp_path / "metrics.jsonl").read_text().strip():
        assert process.poll() is None and time.time() < deadline, process.stderr.read()[-2000:]
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-2000:]
    assert "Traceback" not in err
    [checkpoint] = complete_checkpoints(tmp_path)
    step = TrainerState.read(checkpoint).step
    assert step >= 1 and "--resume" in out and f"stopped at step {step}" in out


def failing_at_the_first_dev_check(monkeypatch) -> None:
    """The SFT run fails after logging step 1, before its first checkpoint (an injected fault)."""
    import reftune.stages.sft as sft_stage

    def broken(*args, **kwargs):
        raise RuntimeError("injected fault")

    monkeypatch.setattr(sft_stage, "greedy_accuracy", broken)


@pytest.mark.parametrize("resume", [False, True], ids=["fresh", "resume"])
def test_a_run_that_failed_before_its_first_checkpoint_can_be_run_again_either_way(tmp_path, monkeypatch, resume):
    with monkeypatch.context() as patched:
        failing_at_the_first_dev_check(patched)
        with pytest.raises(RuntimeError, match="injected fault"):
            sft(SFTConfig(**TINY, max_steps=2, eval_every=1, output=str(tmp_path)))
    assert (tmp_path / "metrics.jsonl").read_text() and not complete_checkpoints(tmp_path)
    summary = sft(SFTConfig(**TINY, max_steps=2, eval_every=1, resume=resume, output=str(tmp_path)))
    assert summary.steps == 2 and [c.name for c in complete_checkpoints(tmp_path)] == ["step-000001", "step-000002"]
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in logged if "loss" in row] == [1, 2]  # the failed attempt's step 1 was cut


def test_resuming_a_run_without_a_checkpoint_with_other_options_points_at_starting_afresh(tmp_path, monkeypatch):
    with monkeypatch.context() as patched:
        failing_at_the_first_dev_check(patched)
        with pytest.raises(RuntimeError, match="injected fault"):
            sft(SFTConfig(**TINY, max_steps=2, eval_every=1, output=str(tmp_path)))
    with pytest.raises(ReftuneError, match="learning_rate: .*drop --resume to start it afresh in the same folder"):
        sft(SFTConfig(**TINY, max_steps=2, eval_every=1, learning_rate=1e-3, resume=True, output=str(tmp_path)))
    assert sft(SFTConfig(**TINY, max_steps=1, eval_every=1, learning_rate=1e-3, output=str(tmp_path))).steps == 1


def test_an_eval_folder_is_never_taken_over_by_another_eval(tmp_path):
    run = tmp_path / "run"
    sft(SFTConfig(**TINY, max_steps=1, eval_every=1, output=str(run)))
    options = dict(task="arithmetic", model=str(run / "best"), limit=2, max_new_tokens=8, progress=False,
                   output=str(tmp_path / "eval"))
    evaluate(EvalConfig(**options))
    with pytest.raises(ReftuneError, match="already holds a `reftune eval` run"):
        evaluate(EvalConfig(**options))
