"""The RL variants on the loop: every preset runs, dynamic sampling fills a step or stops at its cap,
and combinations that cannot work are refused in one line."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from reftune.config import RLConfig
from reftune.config.options import read_yaml_options
from reftune.errors import ReftuneError
from reftune.generation.rollout import Rollout
from reftune.stages.rl import Scored, fill_with_signal, rl
from reftune.training.preparation import build_accelerator

PRESETS = sorted(p for p in (Path(__file__).resolve().parents[2] / "configs" / "rl").glob("*.yaml")
                 if not p.name.startswith("reft-"))
SMALL = dict(task="arithmetic", style="nl", data=None, train_split="train", dev_split="dev", max_train_examples=8,
             eval_limit=2, eval_max_new_tokens=8, questions_per_step=4, num_samples_per_question=2, micro_batch_size=8,
             max_new_tokens=100, max_steps=2, eval_every=1, learning_rate=1e-4, report_to="jsonl", progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_every_variant_preset_trains_two_steps_on_the_tiny_model(tmp_path, warm_tiny, preset):
    """The preset's algorithm (estimator, aggregation, clipping, ratios, KL, dynamic sampling) at the
    tiny model's scale: parameters move and checkpoints are written."""
    options = {**read_yaml_options(preset, RLConfig), **SMALL, "model": warm_tiny, "output": str(tmp_path)}
    rl(RLConfig(**options))
    weights = [load_file(str(tmp_path / "checkpoints" / f"step-00000{s}" / "model" / "model.safetensors")) for s in (1, 2)]
    assert any(not torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def toy_scored(scores: list[float], group_size: int) -> Scored:
    """A rollout of len(scores) one-token responses, group_size samples per question."""
    rows = len(scores)
    rollout = Rollout(sequences=torch.arange(rows * 3).view(rows, 3), attention_mask=torch.ones(rows, 3, dtype=torch.long),
                      response_mask=torch.tensor([[0, 0, 1]] * rows), old_logps=torch.zeros(rows, 3),
                      prompt_index=torch.arange(rows) // group_size, finished=torch.ones(rows, dtype=torch.bool),
                      texts=[f"t{i}" for i in range(rows)], prompt_length=2)
    questions = [f"q{i}" for i in range(rows // group_size)]
    return Scored(rollout, questions, [None] * rows, torch.tensor(scores))


def test_dynamic_sampling_changes_nothing_when_every_group_has_signal():
    first = toy_scored([1.0, 0.0, 0.1, 1.0], group_size=2)
    scored, rounds = fill_with_signal(first, lambda r: pytest.fail("no extra round"), 3, build_accelerator(),
                                      lambda qs: pytest.fail("no extra round"), 2, pad_id=0)
    assert rounds == 0 and scored.questions == first.questions and torch.equal(scored.scores, first.scores)
    assert torch.equal(scored.rollout.sequences, first.rollout.sequences)


def test_dynamic_sampling_fills_the_step_with_groups_that_have_signal():
    first = toy_scored([1.0, 1.0, 0.0, 1.0], group_size=2)         # q0 all equal, q1 informative
    extra = toy_scored([0.0, 0.0, 1.0, 0.0, 0.1, 1.0], group_size=2)  # only its q1 and q2 informative
    scored, rounds = fill_with_signal(first, lambda r: ["x"], 3, build_accelerator(), lambda qs: extra, 2, pad_id=0)
    assert rounds == 1 and scored.questions == ["q1", "q1"] and scored.scores.tolist() == [0.0, 1.0, 1.0, 0.0]
    assert scored.rollout.texts == ["t2", "t3", "t2", "t3"]


def test_dynamic_sampling_stops_at_its_cap_and_keeps_the_first_round_when_nothing_has_signal():
    first = toy_scored([0.0, 0.0, 0.0, 0.0], group_size=2)
    calls = []
    scored, rounds = fill_with_signal(first, lambda r: calls.append(r) or ["x"], 2, build_accelerator(),
                                      lambda qs: toy_scored([1.0, 1.0], 2), 2, pad_id=0)
    assert rounds == 2 and calls == [0, 1] and scored is first


@pytest.mark.slow
def test_a_step_without_signal_stops_dynamic_sampling_at_the_cap_and_says_so(tmp_path, capsys):
    """A random tiny model answers nothing: every group is all zeros."""
    rl(RLConfig(**{**SMALL, "max_steps": 1, "max_new_tokens": 8}, model="tiny", advantage_estimator="group",
                dynamic_sampling=True, max_dynamic_sampling_rounds=2, output=str(tmp_path)))
    assert "reached its cap of 2 extra rounds" in capsys.readouterr().out
    from reftune.training.tracking import read_metrics

    [logged] = [m for m in read_metrics(tmp_path) if "reward_mean" in m]
    assert logged["dynamic_sampling_rounds"] == 2 and logged["no_signal_group_share"] == 1.0


@pytest.mark.parametrize("options, message", [
    ({"dynamic_sampling": True}, "dynamic_sampling compares the samples"),
    ({"advantage_estimator": "rloo"}, "the rloo estimator compares the samples"),
    ({"importance_sampling": "sequence"}, "one ratio per sample"),
    ({"loss_aggregation": "seq_sum"}, "unknown loss_aggregation"),
    ({"dual_clip": 0.5}, "dual_clip must be > 1"),
    ({"kl_estimator": "k4"}, "unknown kl_estimator"),
    ({"critic_warmup_steps": -1}, "critic_warmup_steps must be >= 0"),
    ({"critic_warmup_steps": 2, "advantage_estimator": "group", "num_samples_per_question": 2}, "group estimator has none"),
])
def test_combinations_that_cannot_work_are_refused_in_one_line(options, message):
    with pytest.raises(ReftuneError, match=message):
        RLConfig(**options)


def policy_and_head(step_folder: Path) -> tuple[dict, dict]:
    model = step_folder / "model"
    return load_file(str(model / "model.safetensors")), load_file(str(model / "value_head.safetensors"))


def test_the_critics_warm_up_trains_the_value_head_alone_then_the_policy(tmp_path, warm_tiny):
    """Two warm-up steps leave every policy weight as the warm-up model had it and move the value
    head; the third step moves the policy."""
    rl(RLConfig(**{**SMALL, "max_steps": 3}, model=warm_tiny, critic_warmup_steps=2, keep_checkpoints=3,
                output=str(tmp_path)))
    start = load_file(str(Path(warm_tiny) / "model.safetensors"))
    steps = [policy_and_head(tmp_path / "checkpoints" / f"step-00000{s}") for s in (1, 2, 3)]
    for policy, _ in steps[:2]:
        assert all(torch.equal(policy[name], start[name]) for name in start)
    assert any(not torch.equal(steps[0][1][name], steps[1][1][name]) for name in steps[0][1])
    assert any(not torch.equal(steps[2][0][name], start[name]) for name in start)
    flags = [m["critic_warmup"] for m in map(json.loads, (tmp_path / "metrics.jsonl").open()) if "critic_warmup" in m]
    assert flags == [1, 1, 0]
