"""Stages under `accelerate launch` (CPU, gloo): processes stay in sync; SFT on 2 equals SFT on 1."""
import json
import subprocess
import sys
import textwrap

import pytest
import torch

pytestmark = pytest.mark.costly(40)  # about this many seconds in all: costly files start first

# Runs a stage and, at each checkpoint, also saves every process's own copy of the weights.
SPY = textwrap.dedent("""
    import sys
    from pathlib import Path

    import torch

    from reftune.config import RLConfig, SFTConfig
    from reftune.stages import {stage} as stage

    from reftune.training import checkpoint

    keep_best = checkpoint.checkpoint_keeping_best

    def save_every_rank_too(accelerator, output, state, score, export, keep, metric):
        model = accelerator.unwrap_model(accelerator._models[0])
        torch.save(model.state_dict(), Path(output) / f"rank{{accelerator.process_index}}-step{{state.step}}.pt")
        return keep_best(accelerator, output, state, score, export, keep, metric)

    checkpoint.checkpoint_keeping_best = save_every_rank_too
""")
SFT_RUN = """stage.sft(SFTConfig(task="arithmetic", model="tiny", max_train_examples=8, eval_limit=4,
    eval_max_new_tokens=8, batch_size=4, micro_batch_size=1, learning_rate=1e-3, max_steps=3,
    eval_every=3, report_to="jsonl", progress=False, output=sys.argv[1]))"""
RL_RUN = """stage.rl(RLConfig(task="arithmetic", model=sys.argv[2], max_train_examples=8, eval_limit=2,
    eval_max_new_tokens=8, questions_per_step=4, num_samples_per_question=2, micro_batch_size=4,
    max_new_tokens=100, learning_rate=1e-4, max_steps=2, eval_every=1, report_to="jsonl",
    progress=False, output=sys.argv[1]))"""


def launch(tmp_path, stage: str, run: str, num_processes: int, *args: str) -> None:
    script = tmp_path / f"launched_{stage}.py"
    script.write_text(SPY.format(stage=stage) + run)
    # --multi_gpu selects accelerate's torchrun launcher; with no GPU the processes use gloo on CPU.
    launcher = ["--multi_gpu"] if num_processes > 1 else []
    command = [sys.executable, "-m", "accelerate.commands.launch", *launcher, "--num_processes",
               str(num_processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend",
               "no", "--main_process_port", "0", str(script), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def rank_weights(folder, step):
    return [torch.load(folder / f"rank{rank}-step{step}.pt") for rank in (0, 1)]


@pytest.mark.slow
def test_two_processes_end_with_identical_weights_equal_to_one_process(tmp_path):
    launch(tmp_path, "sft", SFT_RUN, 2, str(tmp_path / "two"))
    launch(tmp_path, "sft", SFT_RUN, 1, str(tmp_path / "one"))
    rank0, rank1 = rank_weights(tmp_path / "two", 3)
    single = torch.load(tmp_path / "one" / "rank0-step3.pt")
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), f"{name} differs between the processes"
        # 2 processes x 2 micro-batches = 1 process x 4: the same loss, up to summation order
        assert torch.allclose(rank0[name], single[name], atol=1e-5), f"{name} differs from one process"
    losses = {}
    for run in ("one", "two"):
        lines = [json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        losses[run] = [x["loss"] for x in lines if "loss" in x]
    assert losses["one"] == pytest.approx(losses["two"], rel=1e-5)


@pytest.mark.slow
def test_rl_under_two_processes_keeps_weights_identical(tmp_path, warm_tiny):
    launch(tmp_path, "rl", RL_RUN, 2, str(tmp_path / "out"), warm_tiny)
    for step in (1, 2):
        rank0, rank1 = rank_weights(tmp_path / "out", step)
        for name in rank0:
            assert torch.equal(rank0[name], rank1[name]), f"{name} differs between the processes"
    first, last = rank_weights(tmp_path / "out", 1)[0], rank_weights(tmp_path / "out", 2)[0]
    assert any(not torch.equal(first[name], last[name]) for name in first), "RL moved nothing"
