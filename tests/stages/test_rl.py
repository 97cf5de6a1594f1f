import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from reftune.config import RLConfig
from reftune.errors import ReftuneError
from reftune.stages.rl import rl

pytestmark = pytest.mark.costly(70)  # about this many seconds in all: costly files start first

TINY_RL = dict(task="arithmetic", max_train_examples=8, dev_split="dev", eval_limit=2,
               eval_max_new_tokens=8, questions_per_step=4, num_samples_per_question=2, micro_batch_size=4,
               max_new_tokens=120, learning_rate=1e-4, report_to="jsonl", progress=False)


@pytest.fixture(autouse=True)
def from_warm_model(warm_tiny):
    TINY_RL["model"] = warm_tiny


def metrics(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def weights(checkpoint):
    """The policy's weights and, for GAE, the value head's (the group estimators build none)."""
    head = checkpoint / "model" / "value_head.safetensors"
    return {**load_file(str(checkpoint / "model" / "model.safetensors")),
            **({f"value_head.{k}": v for k, v in load_file(str(head)).items()} if head.exists() else {})}


@pytest.mark.parametrize("estimator", ["gae", "group"])
def test_two_steps_move_the_policy_and_write_a_checkpoint(tmp_path, estimator):
    from transformers import AutoModelForCausalLM

    rl(RLConfig(**TINY_RL, output=str(tmp_path), max_steps=2, eval_every=1, advantage_estimator=estimator))
    first, second = (weights(tmp_path / "checkpoints" / f"step-00000{s}") for s in (1, 2))
    moved = [name for name in first if not torch.equal(first[name], second[name])]
    assert "model.layers.0.self_attn.q_proj.weight" in moved
    if estimator == "gae":
        assert "value_head.weight" in moved
    else:  # no critic: no value head is built, trained or saved
        assert not (tmp_path / "checkpoints" / "step-000002" / "model" / "value_head.safetensors").exists()
    AutoModelForCausalLM.from_pretrained(tmp_path / "checkpoints" / "step-000002" / "model")
    logged = [m for m in metrics(tmp_path) if "reward_mean" in m]
    assert [m["step"] for m in logged] == [1, 2]
    for key in ("kl", "policy_loss", "value_loss", "clip_fraction", "entropy", "response_length", "grad_norm",
                "completion_tokens_per_s", "time_sampling", "time_scoring", "time_reference", "time_update"):
        assert key in logged[0], key


@pytest.mark.parametrize("options", [{}, {"lora_rank": 4}, {"advantage_estimator": "group"}],
                         ids=["full", "lora", "group"])
def test_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path, options):
    run = dict(TINY_RL, max_steps=4, eval_every=2, keep_checkpoints=5, **options)
    rl(RLConfig(**run, output=str(tmp_path / "straight")))
    rl(RLConfig(**run, output=str(tmp_path / "resumed")))
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "step-000004")  # killed before this save
    assert rl(RLConfig(**run, output=str(tmp_path / "resumed"), resume=True)).steps == 4
    straight = weights(tmp_path / "straight" / "checkpoints" / "step-000004")
    resumed = weights(tmp_path / "resumed" / "checkpoints" / "step-000004")
    for name in straight:
        assert torch.allclose(straight[name], resumed[name], atol=1e-6), name
    rewards = {run: [m["reward_mean"] for m in metrics(tmp_path / run) if "reward_mean" in m][-2:]
               for run in ("straight", "resumed")}
    assert rewards["straight"] == rewards["resumed"]


def test_kl_coef_defaults_follow_the_cot_style():
    assert RLConfig(style="nl").kl_coef == 0.05 and RLConfig(style="python").kl_coef == 0.01
    assert RLConfig(style="nl", kl_coef=0.2).kl_coef == 0.2


def test_configs_that_cannot_work_are_refused():
    with pytest.raises(ReftuneError, match="num_samples_per_question >= 2"):
        RLConfig(advantage_estimator="group")
    with pytest.raises(ReftuneError, match="unknown advantage_estimator"):
        RLConfig(advantage_estimator="vtrace")
    with pytest.raises(ReftuneError, match="test split"):
        RLConfig(dev_split="test")


def test_a_runaway_kl_stops_the_run_with_a_report(tmp_path):
    summary = rl(RLConfig(**{**TINY_RL, "learning_rate": 5e-2}, output=str(tmp_path), max_steps=6,
                          eval_every=10, max_kl=1e-3))
    assert summary.stopped and "running away" in summary.stopped and summary.steps < 6
    assert (tmp_path / "checkpoints" / f"step-{summary.steps:06d}").exists()


def test_a_non_finite_loss_skips_the_update(tmp_path):
    from reftune.model.heads import PolicyWithValueHead
    from reftune.model.loading import load_policy
    from reftune.training.ppo import Experience, ppo_update
    from reftune.training.preparation import build_accelerator

    accelerator = build_accelerator()
    model = PolicyWithValueHead(load_policy("tiny").model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sequences = torch.randint(3, 50, (2, 6))
    response = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 0, 0, 1, 1, 1]])
    advantages = torch.ones(2, 6)
    advantages[0, 2] = float("nan")
    zeros = torch.zeros(2, 6)
    experience = Experience(sequences, torch.ones(2, 6, dtype=torch.long), response, zeros, zeros, zeros,
                            advantages, zeros, prompt_length=2)
    config = RLConfig(micro_batch_size=2, ppo_epochs=2)
    update = ppo_update(accelerator, model, optimizer, list(model.parameters()), experience, config, True)
    assert update["skipped_updates"] == 2
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_at_another_temperature_the_first_update_sees_a_ratio_of_one(tiny_policy):
    """Samples drawn at temperature 0.5 are scored by the update at that temperature too: before any
    step the new and old log-probs agree, so nothing is clipped."""
    from reftune.generation.rollout import SamplingParams, sample
    from reftune.model.heads import PolicyWithValueHead
    from reftune.training.ppo import Experience, ppo_update
    from reftune.training.preparation import build_accelerator

    model = PolicyWithValueHead(tiny_policy.model)
    rollout = sample(tiny_policy.model, tiny_policy.tokenizer, ["1 + 2 =", "3 * 4 ="],
                     SamplingParams(temperature=0.5, max_new_tokens=10, num_samples=2), torch.Generator().manual_seed(0),
                     value_head=model.value_head)
    response = rollout.response_mask
    advantages = torch.randn(response.shape, generator=torch.Generator().manual_seed(1)) * response
    experience = Experience(rollout.sequences, rollout.attention_mask, response, rollout.old_logps, rollout.old_logps,
                            rollout.values, advantages, rollout.values, rollout.prompt_length)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    for temperature, clipped in ((0.5, False), (1.0, True)):
        config = RLConfig(micro_batch_size=4, ppo_epochs=1, temperature=temperature, clip_range=0.01)
        update = ppo_update(build_accelerator(), model, optimizer, list(model.parameters()), experience, config, True)
        assert (update["clip_fraction"] > 0) == clipped


class FixedOutputs(torch.nn.Module):
    """A stand-in policy with a value head: uniform logits over 4 tokens and values of 0 on every
    response column, so each token's policy loss is -advantage and its value loss 0.5 * return^2."""

    def __init__(self):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(()))

    def forward(self, sequences, attention_mask, response_start, group_size=1, values_only=False):
        shape = (sequences.size(0), sequences.size(1) - response_start)
        return torch.zeros(*shape, 4) + self.bias, torch.zeros(shape) + self.bias


@pytest.mark.parametrize("aggregation, expected", [(None, 2.0), ("token_mean", 1.0)],
                         ids=["defaults", "token_mean"])
def test_the_defaults_aggregate_both_losses_as_the_authors_code(aggregation, expected):
    """Rows of 1 and 3 response tokens with token losses [4] and [0, 0, 0]: the ReFT authors' code
    averages each row over its tokens, then the rows (2.0); a mean over all tokens gives 1.0."""
    from reftune.training.ppo import Experience, ppo_update
    from reftune.training.preparation import build_accelerator

    response = torch.tensor([[0, 1, 0, 0], [0, 1, 1, 1]])
    uniform = torch.full((2, 4), -float(torch.log(torch.tensor(4.0)))) * response  # old log-probs: ratio 1
    advantages = torch.tensor([[0, -4.0, 0, 0], [0, 0, 0, 0]])
    returns = torch.tensor([[0, 8 ** 0.5, 0, 0], [0, 0, 0, 0]])  # 0.5 * (0 - sqrt 8)^2 = 4
    zeros = torch.zeros(2, 4)
    experience = Experience(torch.ones(2, 4, dtype=torch.long), torch.ones(2, 4, dtype=torch.long), response,
                            uniform, uniform, zeros, advantages, returns, prompt_length=1)
    chosen = {} if aggregation is None else {"loss_aggregation": aggregation, "value_loss_aggregation": aggregation}
    config = RLConfig(micro_batch_size=1, ppo_epochs=1, **chosen)
    model = FixedOutputs()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    update = ppo_update(build_accelerator(), model, optimizer, list(model.parameters()), experience, config, True)
    assert update["policy_loss"] == pytest.approx(expected)
    assert update["value_loss"] == pytest.approx(expected)


def skipping_updates_at(monkeypatch, steps: set[int]) -> None:
    """ppo_update as it reports a step whose every update had a non-finite loss, at the given steps."""
    import reftune.stages.rl as rl_stage
    from reftune.training.ppo import ppo_update as real

    calls = []

    def update(*args, **kwargs):
        calls.append(None)
        if len(calls) in steps:
            nan = float("nan")
            return {"policy_loss": nan, "value_loss": nan, "kl_loss": 0.0, "grad_norm": nan, "skipped_updates": 2}
        return real(*args, **kwargs)

    monkeypatch.setattr(rl_stage, "ppo_update", update)


@pytest.mark.slow
def test_rl_outlives_a_skipped_update_and_stops_when_they_keep_coming(tmp_path, monkeypatch):
    short = {**TINY_RL, "max_new_tokens": 16, "eval_every": 1}
    skipping_updates_at(monkeypatch, {2})
    assert rl(RLConfig(**short, max_steps=3, output=str(tmp_path / "glitch"))).steps == 3
    skipping_updates_at(monkeypatch, {2, 3, 4, 5, 6})
    with pytest.raises(ReftuneError, match="not finite for 3 steps in a row at step 4: .*checkpoints/step-000003"):
        rl(RLConfig(**short, max_steps=6, output=str(tmp_path / "stuck")))
    assert [row["skipped_updates"] for row in metrics(tmp_path / "stuck") if "skipped_updates" in row][1:] == [2, 2, 2]


def live_run(config_path, tmp_path, resume: bool):
    """`reftune rl --config config_path` as a process of its own: the training process itself."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "reftune.cli", "rl", "--config", str(config_path)] + (["--resume"] if resume else [])
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until(process, ready, what: str) -> None:
    import time

    deadline = time.time() + 300
    while not ready():
        assert process.poll() is None, f"the run ended before {what}: {process.stderr.read()[-2000:]}"
        assert time.time() < deadline, f"the run took too long to reach {what}"
        time.sleep(0.002)


def logged_steps(folder) -> list[int]:
    path = folder / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line)["step"] for line in lines if line.endswith("}") and "reward_mean" in line]


def files_of_complete_checkpoints(folder) -> set:
    from reftune.training.checkpoint import complete_checkpoints

    return {p for checkpoint in complete_checkpoints(folder) for p in checkpoint.rglob("*")}


@pytest.mark.slow
def test_kills_and_ctrl_c_then_resume_match_an_uninterrupted_run(tmp_path):
    """One run, interrupted four times and resumed after each: kill -9 in the middle of a step, just
    after a checkpoint is complete, and halfway through writing one; then Ctrl-C, which finishes the
    step and checkpoints. The end equals an uninterrupted run; each step is logged once; nothing that
    was complete before a kill is lost."""
    import signal

    from reftune.config.options import config_to_yaml

    run = dict(TINY_RL, max_steps=8, eval_every=2, keep_checkpoints=10)
    rl(RLConfig(**run, output=str(tmp_path / "straight")))
    folder = tmp_path / "killed"
    config = tmp_path / "killed.yaml"
    config.write_text(config_to_yaml(RLConfig(**run, output=str(folder))))
    checkpoints = folder / "checkpoints"
    faults = [(lambda: 3 in logged_steps(folder), signal.SIGKILL, "mid-step"),
              (lambda: (checkpoints / "step-000004" / "trainer_state.json").exists(), signal.SIGKILL, "after a checkpoint"),
              (lambda: (checkpoints / ".step-000006.partial" / "model").exists(), signal.SIGKILL, "mid-checkpoint"),
              (lambda: 7 in logged_steps(folder), signal.SIGINT, "Ctrl-C")]
    for attempt, (ready, kill, what) in enumerate(faults):
        process = live_run(config, tmp_path, resume=attempt > 0)
        wait_until(process, ready, what)
        complete_before = files_of_complete_checkpoints(folder)
        process.send_signal(kill)
        out, err = process.communicate(timeout=300)
        if kill == signal.SIGKILL:
            assert process.returncode == -signal.SIGKILL
        else:
            assert process.returncode == 0 and "--resume" in out and "Traceback" not in err, err[-2000:]
        assert complete_before <= files_of_complete_checkpoints(folder), what
    assert rl(RLConfig(**run, output=str(folder), resume=True)).steps == 8
    assert logged_steps(folder) == [1, 2, 3, 4, 5, 6, 7, 8]
    straight = weights(tmp_path / "straight" / "checkpoints" / "step-000008")
    resumed = weights(folder / "checkpoints" / "step-000008")
    for name in straight:
        assert torch.allclose(straight[name], resumed[name], atol=1e-6), name


def test_rl_needs_only_questions_and_answers_in_its_style(tmp_path, shared_data):
    """P-CoT RL on GSM8K's original file, which holds no programs: RL samples its own."""
    summary = rl(RLConfig(task="gsm8k", style="python", data=str(shared_data / "gsm8k" / "train.jsonl"), model="tiny",
                          train_split="train", dev_split="train[-2:]", max_train_examples=4, eval_limit=2,
                          eval_max_new_tokens=8, questions_per_step=4, micro_batch_size=4, max_new_tokens=8,
                          max_steps=1, eval_every=1, learning_rate=1e-4, report_to="jsonl", progress=False,
                          output=str(tmp_path)))
    assert summary.steps == 1
