"""SFT and RL under `accelerate launch` with configs/accelerate/fsdp.yaml (FSDP2) on 2 CPU processes over
gloo: the weights are really sharded, the run equals the same run under ddp.yaml, and a resumed run
equals an uninterrupted one. Each launch runs both stages (SFT, then RL from the warm tiny model), and
the three launches run once per module (fixtures)."""
import json
import math
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.costly(50)  # about this many seconds in all: costly files start first

PRESETS = Path(__file__).resolve().parents[2] / "configs" / "accelerate"

# Runs SFT into argv[1] and RL from the model argv[3] into argv[2]; at each checkpoint every process
# also writes the shapes of its own part of each weight.
LAUNCHED = textwrap.dedent("""
    import json
    import sys
    from pathlib import Path

    from reftune.training import checkpoint
    from reftune.config import RLConfig, SFTConfig
    from reftune.stages.rl import rl
    from reftune.stages.sft import sft

    keep_best = checkpoint.checkpoint_keeping_best

    def record_shards(accelerator, output, state, score, export, keep, metric):
        model = accelerator._models[0]
        local = lambda p: p.to_local() if hasattr(p, "to_local") else p
        shapes = {name: [list(local(p).shape), list(p.shape)] for name, p in model.named_parameters()}
        path = Path(output) / f"shards-rank{accelerator.process_index}-step{state.step}.json"
        path.write_text(json.dumps(shapes))
        return keep_best(accelerator, output, state, score, export, keep, metric)

    checkpoint.checkpoint_keeping_best = record_shards
    resume = sys.argv[-1] == "--resume"
    sft(SFTConfig(task="arithmetic", model="tiny", max_train_examples=8, eval_limit=4, eval_max_new_tokens=8,
                  batch_size=4, micro_batch_size=1, learning_rate=1e-3, max_steps=4, eval_every=2, keep_checkpoints=5,
                  report_to="jsonl", progress=False, output=sys.argv[1], resume=resume))
    rl(RLConfig(task="arithmetic", model=sys.argv[3], max_train_examples=8, eval_limit=2, eval_max_new_tokens=8,
                questions_per_step=4, num_samples_per_question=2, micro_batch_size=4, max_new_tokens=100,
                learning_rate=1e-4, max_steps=2, eval_every=1, keep_checkpoints=5, report_to="jsonl", progress=False,
                output=sys.argv[2], resume=resume))
""")
LAST_STEP = {"sft": 4, "rl": 2}
TOLERANCE = 1e-5
"""FSDP reduce-scatters where DDP all-reduces and takes the gradient norm over shards: the same sums
in another order, so the weights agree to float32 rounding (measured: max difference ~1e-7), not bit for bit."""


def launch(tmp_path: Path, preset: str, folders: dict[str, Path], warm_model: str, *args: str) -> None:
    script = tmp_path / "launched.py"
    script.write_text(LAUNCHED)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(PRESETS / preset),
               "--num_processes", "2", "--main_process_port", "0", str(script), str(folders["sft"]),
               str(folders["rl"]), warm_model, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]


def cut_back_and_resume(tmp_path: Path, straight: dict[str, Path], warm_model: str) -> dict[str, Path]:
    """Copies of both straight FSDP runs cut back to before their last checkpoint (as if killed
    there), resumed under fsdp.yaml."""
    resumed = {stage: tmp_path / "resumed" / stage for stage in straight}
    for stage, folder in resumed.items():
        shutil.copytree(straight[stage], folder)
        shutil.rmtree(folder / "checkpoints" / f"step-{LAST_STEP[stage]:06d}")
        saved = folder / "config.yaml"  # the copy's config names its own folder, as a resume requires
        saved.write_text(saved.read_text().replace(str(straight[stage]), str(folder)))
    launch(tmp_path, "fsdp.yaml", resumed, warm_model, "--resume")
    return resumed


@pytest.fixture(scope="module")
def runs(tmp_path_factory, warm_tiny) -> dict[str, dict[str, Path]]:
    """runs[stage][name]: each stage's run under fsdp.yaml, under ddp.yaml, and resumed under fsdp.yaml."""
    tmp_path = tmp_path_factory.mktemp("fsdp")
    folders = {name: {stage: tmp_path / name / stage for stage in LAST_STEP} for name in ("fsdp", "ddp")}
    launch(tmp_path, "fsdp.yaml", folders["fsdp"], warm_tiny)
    launch(tmp_path, "ddp.yaml", folders["ddp"], warm_tiny)
    folders["resumed"] = cut_back_and_resume(tmp_path, folders["fsdp"], warm_tiny)
    return {stage: {name: folders[name][stage] for name in folders} for stage in LAST_STEP}


@pytest.fixture(scope="module")
def sft_runs(runs):
    return runs["sft"]


@pytest.fixture(scope="module")
def rl_runs(runs):
    return runs["rl"]


def exported(folder: Path, step: int) -> dict[str, torch.Tensor]:
    """The model a checkpoint exported (HF folder) and, for RL, its value head."""
    model = folder / "checkpoints" / f"step-{step:06d}" / "model"
    head = model / "value_head.safetensors"
    return {**load_file(str(model / "model.safetensors")),
            **({f"value_head.{k}": v for k, v in load_file(str(head)).items()} if head.exists() else {})}


def logged(folder: Path, key: str) -> list[float]:
    return [row[key] for row in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines()) if key in row]


def assert_halved(folder: Path, step: int) -> None:
    """Each process holds rows [0, ceil(n/2)) or the rest of every weight (FSDP2 shards on dim 0)."""
    rank0, rank1 = (json.loads((folder / f"shards-rank{rank}-step{step}.json").read_text()) for rank in (0, 1))
    for name, (local0, whole) in rank0.items():
        local1 = rank1[name][0]
        assert local0[0] == math.ceil(whole[0] / 2) and local0[0] + local1[0] == whole[0], name
        assert local0[1:] == local1[1:] == whole[1:], name


def assert_close(left: dict, right: dict, atol: float) -> None:
    assert left.keys() == right.keys()
    for name in left:
        assert torch.allclose(left[name], right[name], atol=atol), \
            f"{name}: max difference {(left[name] - right[name]).abs().max():.2e}"


@pytest.mark.slow
def test_fsdp_shards_every_weight_over_the_two_processes(sft_runs, rl_runs):
    assert_halved(sft_runs["fsdp"], 4)
    assert_halved(rl_runs["fsdp"], 2)  # the policy and the value head that shares its backbone
    ddp = json.loads((sft_runs["ddp"] / "shards-rank0-step4.json").read_text())
    assert all(local == whole for local, whole in ddp.values())  # DDP: a whole copy on each


@pytest.mark.slow
def test_fsdp_sft_matches_ddp(sft_runs):
    assert_close(exported(sft_runs["fsdp"], 4), exported(sft_runs["ddp"], 4), TOLERANCE)
    assert logged(sft_runs["fsdp"], "loss") == pytest.approx(logged(sft_runs["ddp"], "loss"), rel=TOLERANCE)


@pytest.mark.slow
def test_fsdp_rl_matches_ddp(rl_runs):
    assert_close(exported(rl_runs["fsdp"], 2), exported(rl_runs["ddp"], 2), TOLERANCE)
    # the same samples: sampling decoded with the gathered weights, which equal DDP's
    assert logged(rl_runs["fsdp"], "reward_mean") == logged(rl_runs["ddp"], "reward_mean")


@pytest.mark.slow
def test_fsdp_sft_resumed_equals_uninterrupted(sft_runs):
    assert_close(exported(sft_runs["resumed"], 4), exported(sft_runs["fsdp"], 4), 1e-6)
    assert logged(sft_runs["resumed"], "loss") == logged(sft_runs["fsdp"], "loss")


@pytest.mark.slow
def test_fsdp_rl_resumed_equals_uninterrupted(rl_runs):
    assert_close(exported(rl_runs["resumed"], 2), exported(rl_runs["fsdp"], 2), 1e-6)
    assert logged(rl_runs["resumed"], "reward_mean") == logged(rl_runs["fsdp"], "reward_mean")
