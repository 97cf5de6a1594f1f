import json

import pytest

from reftune.config import EvalConfig, SampleConfig
from reftune.errors import ReftuneError
from reftune.stages.evaluate import evaluate, summarize
from reftune.tasks import Example, get_task
from reftune.training.samples import QuestionSamples

RUN = dict(task="arithmetic", model="tiny", limit=3, max_new_tokens=6, report_to="jsonl", progress=False)


def test_summary_of_hand_made_samples():
    task = get_task("arithmetic")
    results = [
        QuestionSamples(Example("q1", "?", 5.0), ["", "", "", ""], [5.0, 3.0, 5.0, None], [1.0, 0.1, 1.0, 0.0]),
        QuestionSamples(Example("q2", "?", 2.0), ["", "", "", ""], [7.0, 7.0, 2.0, None], [0.1, 0.1, 1.0, 0.0]),
    ]
    summary = summarize(task, results, greedy=False)
    assert summary["vote_accuracy"] == 0.5  # q1 votes 5 (right), q2 votes 7 (wrong)
    assert summary["pass_at"][1] == (2 / 4 + 1 / 4) / 2
    assert summary["pass_at"][4] == 1.0
    assert summary["no_answer_rate"] == 2 / 8
    assert summary["sample_accuracy"] == 3 / 8
    assert summarize(task, results, greedy=True)["top1_accuracy"] == 0.5  # first samples: right, wrong


def test_eval_writes_per_question_jsonl_and_a_summary(tmp_path):
    summary = evaluate(EvalConfig(**RUN, split="dev", output=str(tmp_path)))
    assert summary.questions == 3 and 0.0 <= summary.top1_accuracy <= 1.0
    rows = [json.loads(line) for line in (tmp_path / "dev-samples.jsonl").read_text().splitlines()]
    assert [row["id"] for row in rows] == ["arithmetic_dev_0", "arithmetic_dev_1", "arithmetic_dev_2"]
    assert set(rows[0]) >= {"question", "gold", "samples", "answers", "correct", "rewards", "vote"}
    assert json.loads((tmp_path / "summary.json").read_text())["questions"] == 3
    assert (tmp_path / "config.yaml").exists()


def test_sampling_k_per_question_reports_vote_and_pass_at_k(tmp_path):
    summary = evaluate(SampleConfig(**RUN, num_samples=4, output=str(tmp_path)))
    assert {"vote@4_accuracy", "pass@1", "pass@2", "pass@4"} <= set(summary.figures()) and summary.top1_accuracy is None
    assert {"vote@4_accuracy", "pass@4", "questions"} <= set(json.loads((tmp_path / "summary.json").read_text()))
    rows = [json.loads(line) for line in (tmp_path / "train-samples.jsonl").read_text().splitlines()]
    assert all(len(row["samples"]) == 4 for row in rows)


def test_temperatures_are_chosen_on_dev_by_vote(tmp_path, warm_tiny):
    summary = evaluate(EvalConfig(task="arithmetic", model=warm_tiny, split="test", limit=4, dev_limit=6,
                                  max_new_tokens=60, num_samples=4, temperatures="0.3,1.0", report_to="jsonl",
                                  progress=False, output=str(tmp_path)))
    assert set(summary.dev_votes) == {"0.3", "1.0"}
    best = max(summary.dev_votes.values())
    assert summary.temperature == float(next(t for t, v in summary.dev_votes.items() if v == best))
    assert json.loads((tmp_path / "summary.json").read_text())["dev_votes"] == summary.dev_votes


@pytest.mark.parametrize("options, message", [
    ({"temperatures": "0.5"}, "two or more values"),
    ({"temperatures": "0.5,hot"}, "not a comma-separated list"),
    ({"temperatures": "0.5,1", "num_samples": 1}, "set --num-samples K >= 2"),
    ({"temperatures": "0.5,1", "dev_split": "test[:50]"}, "chosen on the data it is judged on"),
])
def test_bad_temperatures_are_refused_in_one_line(options, message):
    with pytest.raises(ReftuneError, match=message):
        EvalConfig(**{"task": "arithmetic", "model": "tiny", "num_samples": 4, **options})
