import json

import pytest
import torch
from safetensors.torch import load_file

from reftune.config import SFTConfig
from reftune.errors import ReftuneError
from reftune.stages.sft import sft
from reftune.training.checkpoint import complete_checkpoints
from reftune.training.data import epoch_order

TINY_RUN = dict(task="arithmetic", model="tiny", max_train_examples=8, dev_split="dev", eval_limit=4,
                eval_max_new_tokens=8, batch_size=4, micro_batch_size=2, learning_rate=1e-3,
                report_to="jsonl", progress=False)


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_two_steps_move_the_parameters_and_write_a_checkpoint_transformers_reloads(tmp_path):
    from transformers import AutoModelForCausalLM

    from reftune.training.data import load_examples

    from reftune.training.batches import tokenizer_texts, training_pairs
    from reftune.training.preparation import load_model

    config = SFTConfig(**TINY_RUN, output=str(tmp_path), max_steps=2, eval_every=2, seed=3)
    task, train = load_examples(config, "train", config.max_train_examples)
    _, dev = load_examples(config, "dev", config.eval_limit)
    initial = load_model(config, "cpu", tokenizer_texts(training_pairs(task, train), [task.prompt(e) for e in dev])).model.state_dict()

    assert sft(config).steps == 2
    checkpoint = tmp_path / "checkpoints" / "step-000002"
    trained = AutoModelForCausalLM.from_pretrained(checkpoint / "model").state_dict()
    assert trained.keys() == initial.keys()
    moved = [name for name in initial if not torch.equal(initial[name], trained[name])]
    assert len(moved) == len(initial)
    assert (tmp_path / "best" / "config.json").exists() and (tmp_path / "config.yaml").exists()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "loss" in line] == [1, 2]
    assert any("dev_accuracy" in line for line in lines)
    assert json.loads((checkpoint / "trainer_state.json").read_text())["step"] == 2


def test_the_same_seed_gives_the_same_steps(tmp_path):
    sft(SFTConfig(**TINY_RUN, output=str(tmp_path / "a"), max_steps=1, eval_every=1))
    sft(SFTConfig(**TINY_RUN, output=str(tmp_path / "b"), max_steps=2, eval_every=1, keep_checkpoints=2))
    one = weights(tmp_path / "a" / "checkpoints" / "step-000001" / "model")
    same_first = weights(tmp_path / "b" / "checkpoints" / "step-000001" / "model")
    for name in one:
        assert torch.equal(one[name], same_first[name]), name


@pytest.mark.parametrize("lora_rank", [0, 4])
def test_resume_continues_at_the_right_step_and_matches_an_uninterrupted_run(tmp_path, lora_rank):
    run = dict(TINY_RUN, max_steps=4, eval_every=2, keep_checkpoints=5, lora_rank=lora_rank)
    sft(SFTConfig(**run, output=str(tmp_path / "straight")))
    sft(SFTConfig(**run, output=str(tmp_path / "resumed")))
    # Simulate a run killed after its step-2 checkpoint: the step-4 one was never written.
    import shutil

    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "step-000004")
    summary = sft(SFTConfig(**run, output=str(tmp_path / "resumed"), resume=True))
    assert summary.steps == 4
    lines = [json.loads(x) for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    # the steps logged after the step-2 checkpoint were cut on resume: each step is logged once
    assert [x["step"] for x in lines if "loss" in x] == [1, 2, 3, 4]
    straight = weights(tmp_path / "straight" / "checkpoints" / "step-000004" / "model")
    resumed = weights(tmp_path / "resumed" / "checkpoints" / "step-000004" / "model")
    for name in straight:
        assert torch.allclose(straight[name], resumed[name], atol=1e-6), name


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ReftuneError, match="no complete checkpoint"):
        sft(SFTConfig(**TINY_RUN, output=str(tmp_path), resume=True))


def test_too_long_examples_are_skipped_and_counted(tmp_path, capsys):
    summary = sft(SFTConfig(**{**TINY_RUN, "batch_size": 2, "micro_batch_size": 1}, output=str(tmp_path),
                            max_steps=1, max_length=100))
    assert summary.skipped_too_long > 0
    assert f"{summary.skipped_too_long} of 8 training examples are longer than max_length=100" in capsys.readouterr().out


def test_a_dataset_entirely_too_long_is_refused(tmp_path):
    with pytest.raises(ReftuneError, match="all 8 training examples are longer than max_length=10"):
        sft(SFTConfig(**TINY_RUN, output=str(tmp_path), max_steps=1, max_length=10))


def test_bad_configs_say_what_to_change():
    with pytest.raises(ReftuneError, match="test split"):
        SFTConfig(dev_split="test")
    with pytest.raises(ReftuneError, match="multiple of micro_batch_size"):
        sft(SFTConfig(**{**TINY_RUN, "batch_size": 3}, max_steps=1, output="/tmp/unused-reftune"))


def test_epoch_order_is_a_permutation_fixed_by_seed_and_epoch():
    assert sorted(epoch_order(10, 0, 0)) == list(range(10))
    assert epoch_order(10, 0, 0) == epoch_order(10, 0, 0) != epoch_order(10, 0, 1)


@pytest.mark.slow
def test_sft_learns_a_handful_of_arithmetic_questions(tmp_path):
    """Greedy accuracy on the 8 training questions themselves reaches 90% (measured: 100% by step 100)."""
    summary = sft(SFTConfig(task="arithmetic", model="tiny", max_train_examples=8, dev_split="train",
                            eval_limit=8, batch_size=8, micro_batch_size=4, epochs=200, eval_every=50,
                            learning_rate=3e-3, warmup_ratio=0.05, eval_max_new_tokens=120,
                            report_to="jsonl", progress=False, output=str(tmp_path)))
    assert summary.best_dev_accuracy >= 0.9


def test_a_fresh_run_into_a_folder_with_checkpoints_is_refused_and_loses_nothing(tmp_path):
    sft(SFTConfig(**TINY_RUN, output=str(tmp_path), max_steps=2, eval_every=1))
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    with pytest.raises(ReftuneError, match="already holds a `reftune sft` run"):
        sft(SFTConfig(**TINY_RUN, output=str(tmp_path), max_steps=2, eval_every=1))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before


def test_check_cots_drops_the_gold_cots_whose_stated_arithmetic_is_wrong(tmp_path, shared_data, capsys):
    """SVAMP's original file has one record (chal-680) whose derived CoT states 4 - 2 + 3 = 1."""
    run = dict(task="svamp", data=str(shared_data / "svamp" / "SVAMP.json"), model="tiny", batch_size=8,
               micro_batch_size=8, max_steps=1, eval_limit=2, eval_max_new_tokens=8, dev_split="train[:2]",
               report_to="jsonl", progress=False)
    summary = sft(SFTConfig(**run, check_cots=True, output=str(tmp_path / "checked")))
    assert "dropped 1 (1 wrong_step)" in capsys.readouterr().out
    assert summary.train_examples == 999


def strict_json_lines(path) -> list[dict]:
    """The lines of a JSONL file as a strict reader takes them: NaN and Infinity are not JSON."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def test_a_diverging_run_stops_at_the_step_naming_the_last_checkpoint(tmp_path):
    with pytest.raises(ReftuneError, match="not finite at step 2: the run diverged .*checkpoints/step-000001") as stopped:
        sft(SFTConfig(**{**TINY_RUN, "learning_rate": 1e30}, max_steps=4, eval_every=1, output=str(tmp_path)))
    assert "\n" not in str(stopped.value)
    lines = strict_json_lines(tmp_path / "metrics.jsonl")
    assert [line["step"] for line in lines if "loss" in line] == [1, 2]
    assert None in [line.get("grad_norm", 0) for line in lines] or None in [line.get("loss", 0) for line in lines]
    assert [c.name for c in complete_checkpoints(tmp_path)] == ["step-000001"]
    assert not (tmp_path / "summary.json").exists()  # the run did not finish
    assert all(torch.isfinite(tensor).all() for tensor in weights(tmp_path / "best").values())


def test_weights_that_go_non_finite_are_never_checkpointed_nor_kept_as_best(tmp_path):
    with pytest.raises(ReftuneError, match="the weights are not finite at step 1: .*no checkpoint was written"):
        sft(SFTConfig(**{**TINY_RUN, "learning_rate": 1e300}, max_steps=2, eval_every=1, output=str(tmp_path)))
    assert not complete_checkpoints(tmp_path) and not (tmp_path / "best").exists()
