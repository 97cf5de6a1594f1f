import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from reftune.config import OfflineSTConfig, OnlineSTConfig
from reftune.errors import ReftuneError
from reftune.stages.online_st import online_st
from reftune.stages.sft import sft as offline_st
from reftune.tasks import Example, get_task
from reftune.training.samples import QuestionSamples
from reftune.training.samples import self_training_pairs

QUIET = dict(task="arithmetic", report_to="jsonl", progress=False)


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def metrics(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_self_training_set_keeps_distinct_correct_samples_up_to_k_plus_the_gold():
    task = get_task("arithmetic")
    example = Example("q1", "Ann has 2 apples and gets 3 more.", 5.0, cot="Now she has 2 + 3 = 5 apples.")
    gold = task.target(example)
    samples = [gold,                                  # right but the gold itself: not added twice
               "2 + 3 = 5\nTherefore, the answer is: 5",
               "2 + 3 = 5 \n\nTherefore, the answer is: 5",  # the same up to whitespace
               "2 + 3 = 6\nTherefore, the answer is: 6",  # wrong
               "3 + 2 = 5\nTherefore, the answer is: 5",
               "5\nTherefore, the answer is: 5"]          # right, but over keep_per_question
    rewards = [1.0, 1.0, 1.0, 0.1, 1.0, 1.0]
    result = QuestionSamples(example, samples, [5.0, 5.0, 5.0, 6.0, 5.0, 5.0], rewards)
    pairs, counts = self_training_pairs(task, [result], keep_per_question=2)
    assert [target for _, target in pairs] == [gold, samples[1], samples[4]]
    assert all(prompt == task.prompt(example) for prompt, _ in pairs)
    assert counts["sampled_cots_kept"] == 2 and counts["questions_with_a_kept_sample"] == 1


def test_offline_st_samples_keeps_correct_cots_and_trains_the_base_model(tmp_path, warm_tiny):
    from transformers import AutoModelForCausalLM

    summary = offline_st(OfflineSTConfig(**QUIET, model="tiny", sampler=warm_tiny, num_samples=4, keep_per_question=2,
                                         sample_max_new_tokens=120, max_train_examples=8, dev_split="dev",
                                         eval_limit=2, eval_max_new_tokens=8, batch_size=4, micro_batch_size=4,
                                         learning_rate=1e-3, max_steps=2, eval_every=1, output=str(tmp_path)))
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(len(row["samples"]) == 4 for row in rows)
    right = sum(any(row["correct"]) for row in rows)
    assert summary.data["questions_with_a_kept_sample"] <= right
    assert summary.train_examples == 8 + summary.data["sampled_cots_kept"]
    assert summary.data["sampled_cots_kept"] > 0  # the warm-up is right on ~40% of its samples
    first, last = (weights(tmp_path / "checkpoints" / f"step-00000{s}" / "model") for s in (1, 2))
    assert any(not torch.equal(first[name], last[name]) for name in first)
    AutoModelForCausalLM.from_pretrained(tmp_path / "best")
    # The samples are reused, not drawn again, from a file.
    again = offline_st(OfflineSTConfig(**QUIET, model="tiny", samples=str(tmp_path / "samples.jsonl"), keep_per_question=2,
                                       max_train_examples=8, dev_split="dev", eval_limit=2, eval_max_new_tokens=8,
                                       batch_size=4, micro_batch_size=4, max_steps=1, output=str(tmp_path / "again")))
    assert again.data == summary.data


def test_offline_st_needs_a_sampler_or_samples_and_refuses_a_foreign_file(tmp_path):
    with pytest.raises(ReftuneError, match="--sampler"):
        OfflineSTConfig()
    (tmp_path / "other.jsonl").write_text(json.dumps({"id": "gsm8k_1", "samples": ["x"]}) + "\n")
    with pytest.raises(ReftuneError, match="holds no samples"):
        offline_st(OfflineSTConfig(**QUIET, model="tiny", samples=str(tmp_path / "other.jsonl"), max_train_examples=8,
                                   output=str(tmp_path / "run")))
    (tmp_path / "broken.jsonl").write_text("{not json\n")
    with pytest.raises(ReftuneError, match="line 1"):
        offline_st(OfflineSTConfig(**QUIET, model="tiny", samples=str(tmp_path / "broken.jsonl"), max_train_examples=8,
                                   output=str(tmp_path / "run2")))


ONLINE = dict(QUIET, max_train_examples=8, dev_split="dev", eval_limit=2, eval_max_new_tokens=8, questions_per_step=4,
              num_samples_per_question=2, micro_batch_size=4, max_new_tokens=120, learning_rate=1e-3)


def test_online_st_two_steps_train_on_correct_samples_and_gold(tmp_path, warm_tiny):
    from transformers import AutoModelForCausalLM

    online_st(OnlineSTConfig(**ONLINE, model=warm_tiny, max_steps=2, eval_every=1, output=str(tmp_path)))
    first, second = (weights(tmp_path / "checkpoints" / f"step-00000{s}" / "model") for s in (1, 2))
    assert any(not torch.equal(first[name], second[name]) for name in first)
    AutoModelForCausalLM.from_pretrained(tmp_path / "best")
    logged = [m for m in metrics(tmp_path) if "reward_mean" in m]
    assert [m["step"] for m in logged] == [1, 2]
    assert sum(m["correct_samples_trained"] for m in logged) > 0 and all(m["gold_nll"] > 0 for m in logged)


def test_online_st_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path, warm_tiny):
    run = dict(ONLINE, model=warm_tiny, max_steps=4, eval_every=2, keep_checkpoints=5)
    online_st(OnlineSTConfig(**run, output=str(tmp_path / "straight")))
    online_st(OnlineSTConfig(**run, output=str(tmp_path / "resumed")))
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "step-000004")  # killed before this save
    assert online_st(OnlineSTConfig(**run, output=str(tmp_path / "resumed"), resume=True)).steps == 4
    straight, resumed = (weights(tmp_path / run_name / "checkpoints" / "step-000004" / "model")
                         for run_name in ("straight", "resumed"))
    assert all(torch.allclose(straight[name], resumed[name], atol=1e-6) for name in straight)
