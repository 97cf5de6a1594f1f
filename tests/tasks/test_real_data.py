"""The checks on the real files in ../shared/data (read there, never copied)."""
import json

import pytest

from reftune.scoring.rewards import score_completions
from reftune.tasks import get_task


@pytest.mark.parametrize("name, count", [("train.jsonl", 7473), ("test.jsonl", 1319)])
def test_every_gsm8k_rationale_extracts_to_its_own_final_answer(shared_data, name, count):
    path = shared_data / "gsm8k" / name
    task = get_task("gsm8k", style="nl")
    examples = task.load("train", path)
    finals = [json.loads(line)["answer"].split("####")[-1].strip().replace(",", "")
              for line in path.read_text().splitlines()]
    predictions = task.extract_answers([task.target(e) for e in examples])
    assert len(examples) == count
    assert predictions == [float(final) for final in finals]
    assert not any("<<" in e.cot for e in examples)


def test_every_svamp_nl_cot_with_the_trigger_scores_one(shared_data):
    task = get_task("svamp", style="nl")
    examples = task.load("train", shared_data / "svamp" / "svamp_nl.json")
    raw = json.loads((shared_data / "svamp" / "svamp_nl.json").read_text())
    assert len(examples) == 3076
    assert score_completions(task, [task.target(e) for e in examples],
                             [row["answer_value"] for row in raw]) == [1.0] * 3076


@pytest.mark.slow
def test_every_svamp_program_returns_its_gold(shared_data):
    task = get_task("svamp", style="python")
    path = shared_data / "svamp" / "svamp_python_sdp.json"
    examples = task.load("train", path)
    raw = json.loads(path.read_text())
    assert len(examples) == 3043
    scores = score_completions(task, [task.target(e) for e in examples], [row["answer_value"] for row in raw])
    assert scores == [1.0] * 3043


@pytest.mark.parametrize("name", ["gsm8k_test_set.json"])
def test_reft_gsm8k_test_matches_the_original_answers(shared_data, name):
    reft = get_task("gsm8k").load("test", shared_data / "reft" / name)
    original = get_task("gsm8k").load("test", shared_data / "gsm8k" / "test.jsonl")
    assert [e.id for e in reft] == [e.id for e in original]
    assert [e.answer for e in reft] == [e.answer for e in original]


def test_svamp_test_sets_load(shared_data):
    assert len(get_task("svamp").load("test", shared_data / "svamp" / "svamp_test_set.json")) == 1000
    assert len(get_task("svamp").load("test", shared_data / "svamp" / "SVAMP.json")) == 1000


def test_mathqa_test_files_load_including_list_literal_options(shared_data):
    raw = json.loads((shared_data / "mathqa" / "mathqa_test_set.json").read_text())
    mcq = get_task("mathqa").load("test", shared_data / "mathqa" / "mathqa_test_set.json")
    numeric = get_task("mathqa-numeric").load("test", shared_data / "mathqa" / "mathqa-numeric_test_set.json")
    assert len(mcq) == len(numeric) == 1605
    assert all(len(e.options) == 5 and e.answer in "abcde" for e in mcq)
    list_rows = [i for i, row in enumerate(raw) if row["question"].rsplit("\n", 1)[-1].startswith("[")]
    assert len(list_rows) == 41
    assert all("['" not in mcq[i].question for i in list_rows)
    # Rows in the usual spelling keep the authors' prompt byte for byte.
    usual = [i for i in range(1605) if i not in set(list_rows)]
    assert all(mcq[i].question == raw[i]["question"] for i in usual)
    assert [e.id.split("_")[-1] for e in mcq] == [e.id.split("_")[-1] for e in numeric]
