"""The Python API: the README's example runs as written (extracted from the README, not copied), the
stages return typed summaries, and a user's reward_fn replaces the answer reward in RL."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import reftune
from reftune import RLConfig, RLSummary, SFTConfig, SFTSummary, rl
from reftune.errors import ReftuneError

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    section = README.read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_import_reftune_stays_light():
    code = "import sys, reftune; assert 'torch' not in sys.modules; print(len(reftune.__all__))"
    assert int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout) > 10
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        reftune.nothing  # noqa: B018


def test_the_documented_contract_imports_keep_working():
    from reftune.execution import run_programs
    from reftune.rewards import score_completions
    from reftune.tasks import Example, get_task

    task = get_task("gsm8k", style="nl")
    assert score_completions(task, ["So the answer is 72", "no idea"], ["72", "72"]) == [1.0, 0.0]
    assert callable(run_programs) and Example.__name__ == "Example"
    assert score_completions is reftune.score_completions


def test_the_readme_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    warm, reft = namespace["warm"], namespace["reft"]
    assert isinstance(warm, SFTSummary) and isinstance(reft, RLSummary)
    assert reft.steps == 4 and Path(reft.best_model).is_dir()
    assert json.loads((tmp_path / "runs/api-reft/summary.json").read_text())["steps"] == 4
    # the example's reward, 1 / (1 + characters), is never one of the answer reward's 0, 0.1, 1
    rewards = [json.loads(line)["reward_mean"] for line in (tmp_path / "runs/api-reft/metrics.jsonl").open()
               if "reward_mean" in json.loads(line)]
    assert len(rewards) == 4 and all(0 < r < 0.5 for r in rewards)


def constant(value):
    return lambda completions, golds, examples: [value] * len(completions)


RL = dict(task="arithmetic", model="tiny", max_train_examples=8, eval_limit=2, eval_max_new_tokens=8,
          questions_per_step=4, max_new_tokens=16, max_steps=2, eval_every=2, report_to="jsonl", progress=False)


def test_reward_fn_replaces_the_answer_reward(tmp_path):
    seen = []

    def reward(completions, golds, examples):
        seen.append((len(completions), golds, [e.answer for e in examples]))
        return [0.37] * len(completions)

    summary = rl(RLConfig(**RL, num_samples_per_question=2, output=str(tmp_path)), reward_fn=reward)
    assert summary.steps == 2 and len(seen) == 2
    count, golds, answers = seen[0]
    assert count == 8 and golds == answers and golds[0] == golds[1]  # K=2 samples repeat their question's gold
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    assert [round(row["reward_mean"], 6) for row in logged if "reward_mean" in row] == [0.37, 0.37]


@pytest.mark.parametrize("reward_fn, message", [
    (lambda c, g, e: [1.0], "returned 1 rewards for 4 completions"),
    (constant(float("nan")), "must be a finite number"),
    (constant("1"), "must be a finite number"),
])
def test_a_bad_reward_fn_is_named_in_one_line(tmp_path, reward_fn, message):
    with pytest.raises(ReftuneError, match=message):
        rl(RLConfig(**RL, output=str(tmp_path)), reward_fn=reward_fn)


@pytest.mark.parametrize("options, message", [
    ({"learning_rate": "fast"}, "learning_rate must be a finite number, got 'fast'"),
    ({"max_steps": "3"}, "max_steps must be a whole number \\(or None\\), got '3'"),
    ({"epochs": None}, "epochs must be a whole number, got None"),
    ({"max_steps": 1.5}, "max_steps must be a whole number \\(or None\\), got 1.5"),
    ({"progress": "no"}, "progress must be true or false, got 'no'"),
])
def test_a_field_of_the_wrong_kind_is_named_in_one_line(options, message):
    with pytest.raises(ReftuneError, match=message) as refused:
        SFTConfig(**options)
    assert "\n" not in str(refused.value)


def test_numpy_numbers_and_paths_are_stored_as_plain_values():
    import numpy as np

    config = SFTConfig(learning_rate=np.float32(0.5), max_steps=np.int64(3), epochs=2.0, output=Path("runs/x"))
    assert (config.learning_rate, config.max_steps, config.epochs, config.output) == (0.5, 3, 2, "runs/x")
    assert type(config.learning_rate) is float and type(config.max_steps) is int


@pytest.mark.parametrize("stage, config", [(rl, SFTConfig()), (reftune.sft, RLConfig()),
                                           (reftune.verifier, SFTConfig()), (reftune.evaluate, RLConfig())])
def test_a_stage_given_another_stages_config_refuses_it_before_writing_anything(tmp_path, stage, config):
    config.output = str(tmp_path / "run")
    with pytest.raises(ReftuneError, match=f"takes \\w+Config, not {type(config).__name__}") as refused:
        stage(config)
    assert "\n" not in str(refused.value) and not (tmp_path / "run").exists()


def test_reward_fn_may_return_numpy_and_torch_scalars():
    import numpy as np
    import torch

    from reftune.stages.rl import user_rewards

    given = [np.float32(0.5), np.int64(1), torch.tensor(0.25), torch.tensor(2), 0.75, 0]
    assert user_rewards(lambda c, g, e: given, list("abcdef"), [0] * 6, [None] * 6) == [0.5, 1.0, 0.25, 2.0, 0.75, 0.0]
    for bad in (np.bool_(True), torch.tensor(True), torch.tensor([1.0]), np.float64("nan"), torch.tensor(float("inf"))):
        with pytest.raises(ReftuneError, match="every reward must be a finite number"):
            user_rewards(lambda c, g, e: [bad], ["a"], [0], [None])
    with pytest.raises(ReftuneError, match="return a list of rewards"):
        user_rewards(lambda c, g, e: 0.5, ["a"], [0], [None])
    with pytest.raises(ReftuneError, match="reward_fn must be a function"):
        user_rewards("score", ["a"], [0], [None])
