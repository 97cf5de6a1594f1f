"""benchmarks/real_model.py: the whole benchmark on the tiny model and a slice of the SVAMP files, how it
continues after an interruption, and the presets it builds its stages from."""
import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reftune.config import RLConfig, SFTConfig
from reftune.config.options import read_yaml_options
from reftune.errors import ReftuneError

pytestmark = pytest.mark.costly(40)  # about this many seconds in all: costly files start first

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "real_model.py"


def load_script():
    spec = importlib.util.spec_from_file_location("real_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def script():
    return load_script()


def write_slice(shared_data: Path, folder: Path, style: str) -> Path:
    """The first 340 records of the authors' training file (the presets' train[:-300] keeps 40) and,
    beside it, the first 20 test questions; returns the training file."""
    name = {"python": "svamp_python_sdp.json", "nl": "svamp_nl.json"}[style]
    records = json.loads((shared_data / "svamp" / name).read_text())
    (folder / name).write_text(json.dumps(records[:340]))
    test = json.loads((shared_data / "svamp" / "svamp_test_set.json").read_text())
    (folder / "svamp_test_set.json").write_text(json.dumps(test[:20]))
    return folder / name


@pytest.fixture(scope="module", params=["python", "nl"])
def svamp_slice(request, shared_data, tmp_path_factory) -> tuple[str, Path]:
    """(style, its training file) for both CoT styles."""
    return request.param, write_slice(shared_data, tmp_path_factory.mktemp(f"svamp-{request.param}"), request.param)


@pytest.fixture(scope="module")
def python_slice(shared_data, tmp_path_factory) -> Path:
    return write_slice(shared_data, tmp_path_factory.mktemp("svamp-python"), "python")


def quick(data: Path, output: Path, *extra: str) -> list[str]:
    return ["--model", "tiny", "--quick", "--seeds", "0", "--data", str(data), "--output", str(output),
            "--no-progress", *extra]


def fingerprint(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file under `folder` with its modification time and content hash: equal only if untouched."""
    return {str(path.relative_to(folder)): (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
            for path in sorted(folder.rglob("*")) if path.is_file() and path.name != ".lock"}


def own_picks(script, monkeypatch):
    """Each branch stands for its own best checkpoint, so all three models are evaluated on test (the
    tiny model scores 0 on dev everywhere, where the demo's rule would keep the warm-up for both)."""
    monkeypatch.setattr(script, "pick", lambda run, start: script.Pick(str(run / "best"), 0.0, "its own best"))


def check_complete(results: dict, seeds: int = 1) -> None:
    assert len(results["runs"]) == seeds
    for row in results["runs"]:
        for method in ("warmup", "sft", "reft"):
            assert isinstance(row[method]["top1"], float) and isinstance(row[method]["vote"], float)
            assert row[method]["pick"]
        assert row["gap_top1"] is not None and len(row["gap_interval"]) == 2
    assert set(results["mean"]) >= {"warmup_top1", "sft_top1", "reft_top1", "gap_top1", "gap_vote"}
    assert results["targets"]["note"].startswith("--quick")


@pytest.mark.slow
def test_quick_run_trains_every_stage_and_scores_every_pick(script, svamp_slice, tmp_path, monkeypatch):
    style, data = svamp_slice
    own_picks(script, monkeypatch)
    save = tmp_path / "saved" / "real-model.json"
    assert script.main(quick(data, tmp_path / "out", "--style", style, "--save", str(save))) == 0
    folder = tmp_path / "out" / style
    results = json.loads((folder / "results.json").read_text())
    check_complete(results)
    assert json.loads(save.read_text()) == results
    assert results["settings"]["continued_sft_steps"] == 3  # 2 RL steps x 4 x 8 rows / (3 x 8)
    for name in ("warm-up", "sft", "reft"):
        assert (folder / "seed-0" / "eval" / f"{name}-greedy" / "summary.json").exists()
        assert (folder / "seed-0" / "eval" / f"{name}-sampled" / "summary.json").exists()
    saved = (folder / "seed-0" / "reft" / "config.yaml").read_text()
    assert "advantage_estimator: gae" in saved and "kl_in: reward" in saved and "prompt_format: plain" in saved
    status = json.loads((folder / "status.json").read_text())
    assert status["state"] == "finished" and status["current"] is None
    assert all(stage["state"] == "finished" for stage in status["stages"].values())


def interrupt(*_, **__):
    raise KeyboardInterrupt


@pytest.mark.slow
def test_an_interrupted_run_resumes_without_redoing_what_finished(script, python_slice, tmp_path, monkeypatch, capsys):
    data = python_slice
    own_picks(script, monkeypatch)
    args = quick(data, tmp_path / "out")
    folder = tmp_path / "out" / "python"
    # 1. stopped at the second stage: the warm-up is done, ReFT never started
    monkeypatch.setattr(script, "rl", interrupt)
    assert script.main(args) == 130
    assert "--resume" in capsys.readouterr().err
    status = json.loads((folder / "status.json").read_text())
    assert (status["state"], status["current"]) == ("interrupted", "seed-0/reft")
    assert status["stages"]["seed-0/warmup"]["state"] == "finished" and status["continue_with"].endswith("--resume")
    assert script.main(args) == 2  # without --resume the folder is refused, nothing touched
    warmup = fingerprint(folder / "seed-0" / "warmup")
    # 2. continued, and stopped again inside the first test evaluation, which leaves a partial folder
    monkeypatch.undo()
    own_picks(script, monkeypatch)
    calls, train = [], script.sft
    monkeypatch.setattr(script, "sft", lambda config: calls.append(config.output) or train(config))
    monkeypatch.setattr(script, "evaluate", partial_evaluation)
    assert script.main([*args, "--resume"]) == 130
    assert calls == [str(folder / "seed-0" / "sft")]  # the warm-up was not trained again
    branches = {stage: fingerprint(folder / "seed-0" / stage) for stage in ("reft", "sft")}
    # 3. continued to the end
    monkeypatch.undo()
    own_picks(script, monkeypatch)
    assert script.main([*args, "--resume"]) == 0
    assert fingerprint(folder / "seed-0" / "warmup") == warmup
    assert {stage: fingerprint(folder / "seed-0" / stage) for stage in ("reft", "sft")} == branches
    check_complete(json.loads((folder / "results.json").read_text()))
    assert json.loads((folder / "status.json").read_text())["state"] == "finished"


def partial_evaluation(config):
    """An evaluation killed after it began writing: its folder holds a part of its samples."""
    Path(config.output).mkdir(parents=True, exist_ok=True)
    (Path(config.output) / "test-samples.jsonl").write_text('{"id": "cut')
    raise KeyboardInterrupt


@pytest.mark.slow
def test_ctrl_c_of_the_script_mid_run_then_resume_completes(python_slice, tmp_path):
    data = python_slice
    folder = tmp_path / "out" / "python"
    command = [sys.executable, str(SCRIPT), *quick(data, tmp_path / "out")]
    environment = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    # Ctrl-C as a terminal sends it, even where pytest itself runs with SIGINT ignored (a background job)
    process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (folder / "seed-0" / "warmup" / "summary.json").exists() and process.poll() is None:
        assert time.monotonic() < deadline, "the warm-up did not finish in time"
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Continue with" in err
    assert json.loads((folder / "status.json").read_text())["state"] == "interrupted"
    warmup = fingerprint(folder / "seed-0" / "warmup")
    finished = subprocess.run([*command, "--resume"], cwd=ROOT, env=environment, capture_output=True, text=True,
                              timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert "seed-0/warmup: finished earlier, skipped" in finished.stdout
    assert fingerprint(folder / "seed-0" / "warmup") == warmup
    check_complete(json.loads((folder / "results.json").read_text()))


# ---- the presets the benchmark is built from ----------------------------------------------------------
def plan_for(script, style: str, data: Path, *extra: str):
    return script.make_plan(script.parse_args(["--style", style, "--data", str(data), *extra]))


def test_every_stage_is_its_preset_with_only_data_model_and_folder_set(script, svamp_slice):
    style, data = svamp_slice
    plan = plan_for(script, style, data)
    for name, options, config_type in (("warmup", plan.warmup, SFTConfig), ("reft", plan.reft, RLConfig),
                                       ("sft", plan.sft, SFTConfig)):
        preset = read_yaml_options(script.preset_paths(style)[name], config_type)
        assert config_type(**options)  # builds its stage's config
        differing = {key for key in preset.keys() | options.keys() if preset.get(key) != options.get(key)}
        assert differing <= {"data", "output", "model"}, (name, differing)
    assert plan.evaluation["max_new_tokens"] == plan.reft["max_new_tokens"]
    assert plan.evaluation["prompt_format"] == plan.warmup["prompt_format"]


@pytest.mark.parametrize("style", ["python", "nl"])
def test_continued_sft_presets_hold_reft_compute(script, style):
    paths = script.preset_paths(style)
    reft = read_yaml_options(paths["reft"], RLConfig)
    sft = read_yaml_options(paths["sft"], SFTConfig)
    assert (sft["max_steps"], sft["eval_every"]) == script.sft_budget(reft, sft["batch_size"])
    assert reft["advantage_estimator"] == "gae" and reft["kl_in"] == "reward" and reft["kl_estimator"] == "k1"


def test_a_preset_out_of_step_with_reft_compute_is_refused_in_one_line(script, svamp_slice, tmp_path, monkeypatch):
    style, data = svamp_slice
    paths = script.preset_paths(style)
    changed = tmp_path / paths["reft"].name
    changed.write_text(paths["reft"].read_text().replace("max_steps: 100", "max_steps: 120"))
    monkeypatch.setattr(script, "preset_paths", lambda _: {**paths, "reft": changed})
    with pytest.raises(ReftuneError, match=r"cost 320 continued-SFT steps .* set those two values") as error:
        plan_for(script, style, data)
    assert "\n" not in str(error.value)


def test_a_missing_data_file_is_one_line(script, tmp_path, capsys):
    assert script.main(["--data", "/nowhere/svamp_python_sdp.json", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "the training file /nowhere/svamp_python_sdp.json does not exist" in err and err.count("\n") == 1


def test_a_vote_temperature_of_zero_is_refused(script, tmp_path, capsys):
    with pytest.raises(SystemExit):
        script.main(["--vote-temperature", "0", "--output", str(tmp_path)])
    assert "--vote-temperature must be > 0" in capsys.readouterr().err


def test_a_fresh_run_refuses_a_folder_that_holds_one(script, svamp_slice, tmp_path, capsys):
    style, data = svamp_slice
    (tmp_path / style).mkdir()
    (tmp_path / style / "status.json").write_text("{}")
    assert script.main(["--style", style, "--data", str(data), "--output", str(tmp_path)]) == 2
    assert "add --resume to continue it" in capsys.readouterr().err


def test_only_a_stage_that_ran_to_its_end_counts_as_finished(script, tmp_path):
    def stopped(reason):
        (tmp_path / "summary.json").write_text(json.dumps({"stopped": reason}))
        return script.finished(tmp_path)

    assert not script.finished(tmp_path)  # no summary: killed, or never started
    assert not stopped("interrupted (Ctrl-C) at step 3")  # checkpointed and stopped: to be continued
    assert stopped(None) and stopped("the mean KL to the reference reached 12.00 (> max_kl 10.0) at step 40")
