import json
from pathlib import Path

import pytest

from reftune.config import CompareConfig
from reftune.errors import ReftuneError
from reftune.stages.compare import compare, right_for_wrong_reasons, table


def test_compare_writes_the_table_with_vote_and_rerank_and_a_bar_chart(tmp_path, warm_tiny, tiny_verifier):
    run_folder = str(Path(warm_tiny).parent)  # a run folder: its best/ model is used
    result = compare(CompareConfig(task="arithmetic", runs=f"SFT={warm_tiny},Warm-up run={run_folder}",
                                   verifier=f"{tiny_verifier}/best", split="train", limit=4, num_samples=4,
                                   max_new_tokens=120, progress=False, output=str(tmp_path)))
    results = json.loads((tmp_path / "compare.json").read_text())
    assert list(results) == ["SFT", "Warm-up run"]
    for name, figures in results.items():
        assert all(figures[key] is not None for key in ("top1", "vote", "rerank", "upper_bound")), name
        samples = [json.loads(line) for line in (tmp_path / "eval" / f"{name.lower().replace(' ', '-')}-sampled"
                                                 / "train-samples.jsonl").read_text().splitlines()]
        assert figures["rerank"] == sum(row["rerank_correct"] for row in samples) / 4
    markdown = (tmp_path / "compare.md").read_text()
    assert "| method | top-1 | vote@4 | rerank@4 | any right@4 | right, wrong steps |" in markdown
    assert f"{100 * results['SFT']['rerank']:.1f}%" in markdown
    page = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in page and "Warm-up run" in page
    assert (tmp_path / "plots" / "methods.png").stat().st_size > 1000
    assert result["report"] == str(tmp_path / "report.html")


def test_table_marks_a_missing_rerank():
    figures = {"top1": 0.5, "vote": 0.625, "rerank": None, "upper_bound": 0.75, "wrong_steps": 0.25}
    headers, rows = table({"SFT": figures}, 8)
    assert headers == ["method", "top-1", "vote@8", "rerank@8", "any right@8", "right, wrong steps"]
    assert rows == [["SFT", "50.0%", "62.5%", "-", "75.0%", "25.0%"]]


def test_right_for_wrong_reasons_counts_right_answers_with_a_wrong_step(tmp_path):
    rows = [("2 + 3 = 5\nTherefore, the answer is: 5", 5),  # right, steps right
            ("2 + 3 = 6\nTherefore, the answer is: 5", 5),  # right answer, wrong step
            ("2 + 3 = 5\nTherefore, the answer is: 7", 5),  # wrong answer: not counted
            ("no answer here", 5)]
    samples = tmp_path / "test-samples.jsonl"
    samples.write_text("".join(json.dumps({"samples": [text], "gold": gold}) + "\n" for text, gold in rows))
    assert right_for_wrong_reasons({"task": "arithmetic"}, samples) == 0.5


def test_compare_refuses_bad_runs(tmp_path):
    with pytest.raises(ReftuneError, match="name=folder"):
        CompareConfig(runs="runs/sft")
    with pytest.raises(ReftuneError, match="twice"):
        CompareConfig(runs="A=x,A=y")
    with pytest.raises(ReftuneError, match="neither a run folder"):
        compare(CompareConfig(runs=f"A={tmp_path}", progress=False, output=str(tmp_path / "out")))
