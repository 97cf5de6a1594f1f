"""Reading every input kind into records: samples files, rollouts, ReFT files, annotate folders."""
import json

import pytest
import torch
from review_inputs import BROKEN_PROGRAM, RIGHT_PROGRAM, python_rows, samples_row, write_jsonl
from review_inputs import python_samples  # noqa: F401 (fixtures)

from reftune.errors import ReftuneError
from reftune.review.records import load_collection
from reftune.review.sources import choose_task, find_inputs


def test_samples_file_loads_with_a_malformed_line_as_an_error_row(python_samples):
    collection = load_collection([python_samples])
    ids = [record.id for record in collection.records]
    assert ids[:2] == ["svamp_1", "svamp_2"] and ids[3:] == ["svamp_3", "svamp_4"]
    error = collection.records[2]
    assert error.outcome == "error" and "line 3" in error.where and "not valid JSON" in error.error
    assert [r.outcome for r in collection.records if not r.error] == ["wrong", "correct", "program_error", "program_error"]


def test_task_and_style_come_from_the_id_prefix_and_the_programs(python_samples):
    source = load_collection([python_samples]).sources[0]
    assert (source.kind, source.choice.task, source.choice.style, source.choice.origin) == \
        ("samples", "svamp", "python", "id prefix")


def test_config_yaml_beside_the_file_names_the_task(tmp_path):
    (tmp_path / "config.yaml").write_text("task: arithmetic\nstyle: nl\ntask_options: {max_steps: 3}\n")
    path = write_jsonl(tmp_path / "dev-samples.jsonl", [samples_row("q1", "1 + 1?", 2.0, ["Therefore, the answer is: 2"], [2.0])])
    choice = load_collection([path]).sources[0].choice
    assert (choice.task, choice.style, choice.options, choice.origin) == ("arithmetic", "nl", {"max_steps": 3}, "config.yaml")


@pytest.mark.parametrize("name, extra", [("test-samples.jsonl", {}), ("rollouts.jsonl", {"step": 4})])
def test_a_demo_run_config_with_task_options_as_a_string_reads(tmp_path, name, extra):
    """config.yaml as the stages write it: task_options is the "key=value,..." string of the option."""
    from reftune.config import EvalConfig
    from reftune.config.options import config_to_yaml

    config = EvalConfig(task="arithmetic", task_options="max_number=5,min_steps=2", model="tiny")
    (tmp_path / "config.yaml").write_text(config_to_yaml(config))
    row = dict(samples_row("arithmetic_1", "2 + 3?", 5.0, ["2 + 3 = 5\nTherefore, the answer is: 5"], [5.0]), **extra)
    choice = load_collection([write_jsonl(tmp_path / name, [row])]).sources[0].choice
    assert (choice.task, choice.options, choice.origin) == ("arithmetic", {"max_number": 5, "min_steps": 2},
                                                            "config.yaml")


def test_task_options_the_task_does_not_take_are_one_clear_error(tmp_path):
    (tmp_path / "config.yaml").write_text("task: arithmetic\ntask_options: colour=blue\n")
    path = write_jsonl(tmp_path / "dev-samples.jsonl", [samples_row("q1", "1 + 1?", 2.0, ["2"], [2.0])])
    with pytest.raises(ReftuneError, match="config.yaml.*colour.*pass --task"):
        load_collection([path])


def test_an_annotate_folder_takes_its_task_from_annotate_json(tmp_path):
    """SVAMP's own ids (chal-680) carry no prefix: annotate.json names the task and style."""
    annotated = [{"item_id": "chal-1", "question": "4 + 3?", "answer_cot": "4 + 3 = 7", "answer_value": "7"}]
    (tmp_path / "annotated.json").write_text(json.dumps(annotated))
    (tmp_path / "annotate.json").write_text(json.dumps({"task": "svamp", "style": "nl", "questions": 1}))
    choice = load_collection([tmp_path]).sources[0].choice
    assert (choice.task, choice.style, choice.origin) == ("svamp", "nl", "annotate.json")


def test_an_input_whose_task_cannot_be_told_is_one_clear_error(tmp_path):
    path = write_jsonl(tmp_path / "samples.jsonl", [samples_row("q1", "1 + 1?", 2.0, ["2"], [2.0])])
    with pytest.raises(ReftuneError, match="cannot tell the task .* pass --task"):
        load_collection([path])
    assert load_collection([path], task="gsm8k").sources[0].choice.origin == "--task"


def test_a_missing_path_is_one_clear_error(tmp_path):
    with pytest.raises(ReftuneError, match="does not exist: give a samples file"):
        find_inputs(tmp_path / "nope.jsonl")


def test_a_device_is_one_clear_error_not_an_endless_read():
    with pytest.raises(ReftuneError, match="/dev/zero is neither a file nor a folder"):
        find_inputs("/dev/zero")


def test_a_folder_without_inputs_is_one_clear_error(tmp_path):
    with pytest.raises(ReftuneError, match="holds nothing to review"):
        find_inputs(tmp_path)


def test_a_demo_folder_points_to_the_samples_below_it(tmp_path):
    """A demo folder holds its runs' files a level or two down: the message names them."""
    row = samples_row("arithmetic_1", "2 + 3?", 5.0, ["Therefore, the answer is: 5"], [5.0])
    samples = write_jsonl((tmp_path / "eval" / "reft").mkdir(parents=True) or tmp_path / "eval" / "reft" /
                          "test-samples.jsonl", [row])
    rollouts = write_jsonl((tmp_path / "reft").mkdir() or tmp_path / "reft" / "rollouts.jsonl", [dict(row, step=0)])
    with pytest.raises(ReftuneError, match="holds nothing to review itself") as raised:
        find_inputs(tmp_path)
    assert str(samples) in str(raised.value) and str(rollouts) in str(raised.value)


def test_rollouts_group_one_question_over_steps_in_step_order(tmp_path):
    rows = [dict(samples_row("svamp_1", "q1?", 7.0, [BROKEN_PROGRAM], [None]), step=10),
            dict(samples_row("svamp_2", "q2?", 12.0, ["def solution():\n    return 12"], [12.0]), step=0),
            dict(samples_row("svamp_1", "q1?", 7.0, [RIGHT_PROGRAM, RIGHT_PROGRAM], [7.0, 7.0]), step=20),
            dict(samples_row("svamp_1", "q1?", 7.0, [BROKEN_PROGRAM], [None]), step=0)]
    collection = load_collection([write_jsonl(tmp_path / "rollouts.jsonl", rows)])
    first = collection.records[0]
    assert collection.sources[0].kind == "rollouts" and len(collection.records) == 2
    assert [s.step for s in first.samples] == [0, 10, 20, 20]
    assert first.outcome == "correct"  # the last step's vote


def test_reft_file_is_checked_at_load_and_extra_cots_join_their_question(tmp_path):
    rows = [{"item_id": "gsm8k_1", "question": "2 + 3?", "answer_cot": "2 + 3 = 5", "answer_value": "5"},
            {"item_id": "gsm8k_1-cot2", "question": "2 + 3?", "answer_cot": "It is 6.\nThe answer is 6", "answer_value": "5"},
            {"item_id": "gsm8k_2", "question": "4 - 1?", "answer_value": "3"}]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(rows))
    collection = load_collection([path], style="nl")
    first, second = collection.records
    assert collection.sources[0].kind == "reft"
    assert [s.status for s in first.samples] == ["correct", "wrong_answer"]  # the first states no answer: its steps are checked
    assert second.samples == ()


def test_annotate_folder_reads_annotated_cots_and_rejects(tmp_path):
    annotated = [{"item_id": "svamp_1", "question": "4 + 3?", "answer_cot": RIGHT_PROGRAM, "answer_value": "7.0"}]
    (tmp_path / "annotated.json").write_text(json.dumps(annotated))
    write_jsonl(tmp_path / "rejects.jsonl", [
        {"item_id": "svamp_1", "question": "4 + 3?", "answer_value": "7.0", "answer_cot": BROKEN_PROGRAM,
         "reason": "program_error", "detail": "NameError: apples_nobody_defined"},
        {"item_id": "svamp_5", "question": "1 + 1?", "answer_value": "2", "answer_cot": "",
         "reason": "request_failed", "detail": "HTTP 500"}])
    collection = load_collection([tmp_path])
    first, second = collection.records
    assert collection.sources[0].kind == "annotate" and collection.sources[0].path.name == "annotated.json"
    assert [(s.origin, s.status) for s in first.samples] == [("training", "correct"), ("rejected", "program_error")]
    assert first.samples[1].detail.startswith("NameError") and second.id == "svamp_5"


@pytest.mark.slow
def test_real_samples_written_by_sample_questions_load_as_written(tmp_path, arithmetic_texts):
    from reftune.generation.rollout import SamplingParams
    from reftune.model.loading import load_policy
    from reftune.tasks import get_task
    from reftune.training.samples import sample_questions
    from reftune.training.samples import write_samples

    task = get_task("arithmetic", style="nl")
    policy = load_policy("tiny", tokenizer_texts=arithmetic_texts, seed=0)
    examples = task.load("dev")[:3]
    results = sample_questions(task, policy.model, policy.tokenizer, examples,
                               SamplingParams(temperature=1.0, max_new_tokens=12, num_samples=2), batch_size=3,
                               generator=torch.Generator().manual_seed(0))
    path = tmp_path / "dev-samples.jsonl"
    write_samples(path, task, results)
    collection = load_collection([path])
    assert [r.id for r in collection.records] == [e.id for e in examples]
    assert [s.text for s in collection.records[0].samples] == results[0].completions
    assert collection.sources[0].choice.task == "arithmetic"


def test_choose_task_rejects_an_unknown_task_name(tmp_path):
    (tmp_path / "config.yaml").write_text("task: chess\n")
    with pytest.raises(ReftuneError, match="unknown task 'chess'"):
        choose_task(tmp_path / "x.jsonl", [], [], None, None)


def test_python_rows_fixture_is_what_the_sampler_writes():
    assert set(python_rows()[0]) == {"id", "question", "gold", "samples", "answers", "rewards", "correct",
                                     "finished", "vote", "vote_correct"}


def test_a_repeated_id_gets_its_own_record_key(tmp_path):
    rows = [samples_row("gsm8k_1", "q?", 2.0, ["Therefore, the answer is: 2"], [2.0]),
            samples_row("gsm8k_1", "q again?", 2.0, ["Therefore, the answer is: 3"], [3.0])]
    collection = load_collection([write_jsonl(tmp_path / "samples.jsonl", rows)])
    assert [r.id for r in collection.records] == ["gsm8k_1", "gsm8k_1#2"]


@pytest.mark.parametrize("text", ['{"question": "q", "answer": "#### 4"}\n', "not json at all\n", ""])
def test_a_file_that_is_no_input_is_one_clear_error(tmp_path, text):
    path = tmp_path / "gsm8k_like.jsonl"
    path.write_text(text)
    with pytest.raises(ReftuneError, match="is not one of the inputs|holds no rows"):
        load_collection([path], task="gsm8k")


def test_rollout_rows_as_the_rl_stage_writes_them_get_their_vote_counted(tmp_path):
    """The RL stage's log_rollouts rows: step, id, question, gold, samples, answers, rewards, correct."""
    def row(step, answers):
        return {"step": step, "id": "gsm8k_3", "question": "2 + 2?", "gold": 4.0,
                "samples": [f"Therefore, the answer is: {a}" for a in answers], "answers": answers,
                "rewards": [1.0 if a == 4.0 else 0.1 for a in answers], "correct": [a == 4.0 for a in answers]}
    path = write_jsonl(tmp_path / "rollouts.jsonl", [row(0, [3.0, 5.0, 3.0]), row(10, [4.0, 4.0, 3.0])])
    record = load_collection([path]).records[0]
    assert (record.vote, record.vote_correct, record.outcome) == (4.0, True, "correct")
    assert [s.finished for s in record.samples] == [True] * 6


def test_an_unterminated_string_is_described_in_plain_words(tmp_path):
    rows = python_rows()[:2]
    path = write_jsonl(tmp_path / "test-samples.jsonl", rows, bad_line='{"id": "svamp_9", "question": "cut')
    error = load_collection([path]).records[2].error
    assert "Unterminated string starting at column" in error and "at at" not in error
