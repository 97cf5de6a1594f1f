import json

import pytest

from reftune.config import EvalConfig, VerifierConfig
from reftune.errors import ReftuneError
from reftune.scoring.selection import rerank
from reftune.stages.evaluate import evaluate
from reftune.stages.verifier import verifier

pytestmark = pytest.mark.costly(25)  # about this many seconds in all: costly files start first


def test_verifier_trains_a_head_on_the_backbone_and_writes_a_reloadable_checkpoint(tiny_verifier):
    from pathlib import Path

    from transformers import AutoModelForCausalLM

    from reftune.model.heads import load_verifier

    folder = Path(tiny_verifier)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["balance"]["train"]["samples"] > 8 and summary["balance"]["train"]["right"] > 0
    assert summary["steps"] >= 2 and 0.0 <= summary["best_dev_auc"] <= 1.0
    model, tokenizer = load_verifier(folder / "best")
    assert model.head.weight.abs().sum() > 0  # the head starts at zero; training moved it
    AutoModelForCausalLM.from_pretrained(folder / "best")  # the backbone is a plain HF folder
    assert (folder / "samples.jsonl").exists() and (folder / "dev-samples.jsonl").exists()


def write_toy_split(folder, split: str, wrong_offsets: tuple[int, ...], copies: int) -> None:
    """Questions "What is a + b?" (a, b in 0..4), each asked `copies` times, with samples
    "a + b = c ... answer c": right for c = a + b, wrong for c = a + b + each offset. Dev uses other
    offsets than train, so the verifier must learn the sums, not the wrong strings."""
    import itertools

    from reftune.tasks import Example, get_task

    task = get_task("gsm8k")
    rows, samples = [], []
    for copy, (a, b) in itertools.product(range(copies), itertools.product(range(5), repeat=2)):
        question_id = f"{split}-{copy}-{a}-{b}"
        rows.append({"item_id": question_id, "question": f"What is {a} + {b}?", "answer_cot": f"{a} + {b} = {a + b}",
                     "answer_value": str(a + b)})
        values = [a + b] + [a + b + offset for offset in wrong_offsets]
        samples.append({"id": question_id, "samples": [task.target(Example(question_id, "", float(v), f"{a} + {b} = {v}"))
                                                       for v in values]})
    (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / f"{split}-samples.jsonl").write_text("".join(json.dumps(row) + "\n" for row in samples))


@pytest.mark.slow
def test_verifier_separates_right_from_wrong_where_correctness_is_learnable(tmp_path):
    """Measured dev AUC after 20 epochs from a random tiny model: 0.79, 0.80, 0.92 (seeds 0, 1, 2);
    it sits near 0.5 for the first few epochs, then climbs."""
    write_toy_split(tmp_path, "train", (1, 2), copies=8)
    write_toy_split(tmp_path, "dev", (-1, 3), copies=2)
    summary = verifier(VerifierConfig(
        task="gsm8k", data=str(tmp_path), model="tiny", samples=str(tmp_path / "train-samples.jsonl"),
        dev_samples=str(tmp_path / "dev-samples.jsonl"), batch_size=32, micro_batch_size=32, epochs=20,
        learning_rate=1e-3, warmup_ratio=0.05, eval_every=60, report_to="jsonl", progress=False,
        output=str(tmp_path / "run")))
    assert summary.balance["train"] == {"samples": 600, "right": 200, "wrong": 400, "right_fraction": 1 / 3}
    assert summary.best_dev_auc >= 0.7, summary


def test_a_verifier_needs_right_and_wrong_samples(tmp_path, warm_tiny):
    rows = [{"id": f"arithmetic_train_{i}", "samples": ["no answer here"]} for i in range(8)]
    (tmp_path / "wrong.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(ReftuneError, match="all wrong"):
        verifier(VerifierConfig(task="arithmetic", model=warm_tiny, samples=str(tmp_path / "wrong.jsonl"),
                                dev_samples=str(tmp_path / "wrong.jsonl"), dev_split="train", max_train_examples=8,
                                report_to="jsonl", progress=False, output=str(tmp_path / "run")))
    with pytest.raises(ReftuneError, match="--sampler"):
        VerifierConfig(samples=str(tmp_path / "wrong.jsonl"))


def test_eval_rerank_picks_the_top_scored_sample_with_an_answer(tmp_path, warm_tiny, tiny_verifier):
    summary = evaluate(EvalConfig(task="arithmetic", model=warm_tiny, split="train", limit=6, num_samples=4,
                                  temperature=1.0, mode="rerank", verifier=f"{tiny_verifier}/best",
                                  max_new_tokens=120, report_to="jsonl", progress=False, output=str(tmp_path)))
    rows = [json.loads(line) for line in (tmp_path / "train-samples.jsonl").read_text().splitlines()]
    assert all(len(row["verifier_scores"]) == 4 for row in rows)
    for row in rows:
        assert row["rerank"] == rerank(row["answers"], row["verifier_scores"])
    assert summary.rerank_accuracy == sum(row["rerank_correct"] for row in rows) / 6
    assert summary.upper_bound == sum(any(row["correct"]) for row in rows) / 6
    assert summary.upper_bound >= max(summary.rerank_accuracy, summary.vote_accuracy)


def test_rerank_without_a_verifier_is_refused():
    with pytest.raises(ReftuneError, match="needs --verifier"):
        EvalConfig(mode="rerank", temperature=1.0, num_samples=4)
    with pytest.raises(ReftuneError, match="--temperature > 0"):
        EvalConfig(mode="vote")
    from reftune.model.heads import load_verifier

    with pytest.raises(ReftuneError, match="verifier folder /nonexistent does not exist"):
        load_verifier("/nonexistent")
