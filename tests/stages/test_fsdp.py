"""SFT and RL under `accelerate launch` with configs/accelerate/fsdp.yaml (FSDP2) on 2 CPU processes over
gloo: the weights are really sharded, the run equals the same run under ddp.yaml, and a resumed run
equals an uninterrupted one. Each stage's three launches run once per module (fixtures)."""
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

PRESETS = Path(__file__).resolve().parents[2] / "configs" / "accelerate"

# Runs a stage; at each checkpoint every process also writes the shapes of its own part of each weight.
LAUNCHED = textwrap.dedent("""
    import json
    import sys
    from pathlib import Path

    from reftune.training import checkpoint
    from reftune.config import RLConfig, SFTConfig
    from reftune.stages import {stage} as stage

    keep_best = checkpoint.checkpoint_keeping_best

    def record_shards(accelerator, output, state, score, export, keep, metric):
        model = accelerator._models[0]
        local = lambda p: p.to_local() if hasattr(p, "to_local") else p
        shapes = {{name: [list(local(p).shape), list(p.shape)] for name, p in model.named_parameters()}}
        path = Path(output) / f"shards-rank{{accelerator.process_index}}-step{{state.step}}.json"
        path.write_text(json.dumps(shapes))
        return keep_best(accelerator, output, state, score, export, keep, metric)

    checkpoint.checkpoint_keeping_best = record_shards
    resume = sys.argv[-1] == "--resume"
""")
SFT_RUN = """stage.sft(SFTConfig(task="arithmetic", model="tiny", max_train_examples=8, eval_limit=4,
    eval_max_new_tokens=8, batch_size=4, micro_batch_size=1, learning_rate=1e-3, max_steps=4, eval_every=2,
    keep_checkpoints=5, report_to="jsonl", progress=False, output=sys.argv[1], resume=resume))"""
RL_RUN = """stage.rl(RLConfig(task="arithmetic", model=sys.argv[2], max_train_examples=8, eval_limit=2,
    eval_max_new_tokens=8, questions_per_step=4, num_samples_per_question=2, micro_batch_size=4,
    max_new_tokens=100, learning_rate=1e-4, max_steps=2, eval_every=1, keep_checkpoints=5, report_to="jsonl",
    progress=False, output=sys.argv[1], resume=resume))"""
TOLERANCE = 1e-5
"""FSDP reduce-scatters where DDP all-reduces and takes the gradient norm over shards: the same sums
in another order, so the weights agree to float32 rounding (measured: max difference ~1e-7), not bit for bit."""


def launch(tmp_path: Path, preset: str, stage: str, run: str, *args: str) -> None:
    script = tmp_path / f"launched_{stage}.py"
    script.write_text(LAUNCHED.format(stage=stage) + run)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(PRESETS / preset),
               "--num_processes", "2", "--main_process_port", "0", str(script), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]


def straight_ddp_and_resumed(tmp_path: Path, stage: str, run: str, last: int, *args: str) -> dict[str, Path]:
    """The run under fsdp.yaml and under ddp.yaml; then a copy of the FSDP run cut back to before its
    last checkpoint (as if killed there) and resumed under fsdp.yaml."""
    folders = {name: tmp_path / name for name in ("fsdp", "ddp", "resumed")}
    launch(tmp_path, "fsdp.yaml", stage, run, str(folders["fsdp"]), *args)
    launch(tmp_path, "ddp.yaml", stage, run, str(folders["ddp"]), *args)
    shutil.copytree(folders["fsdp"], folders["resumed"])
    shutil.rmtree(folders["resumed"] / "checkpoints" / f"step-{last:06d}")
    saved = folders["resumed"] / "config.yaml"  # the copy's config names its own folder, as a resume requires
    saved.write_text(saved.read_text().replace(str(folders["fsdp"]), str(folders["resumed"])))
    launch(tmp_path, "fsdp.yaml", stage, run, str(folders["resumed"]), *args, "--resume")
    return folders


@pytest.fixture(scope="module")
def sft_runs(tmp_path_factory):
    return straight_ddp_and_resumed(tmp_path_factory.mktemp("fsdp-sft"), "sft", SFT_RUN, 4)


@pytest.fixture(scope="module")
def rl_runs(tmp_path_factory, warm_tiny):
    return straight_ddp_and_resumed(tmp_path_factory.mktemp("fsdp-rl"), "rl", RL_RUN, 2, warm_tiny)


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
