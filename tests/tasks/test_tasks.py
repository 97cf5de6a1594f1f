import json

import pytest

from reftune.errors import ReftuneError
from reftune.tasks import STYLES, TASKS, Example, get_task
from reftune.tasks.mathqa import format_options, parse_options

NUMERIC_TASKS = ["gsm8k", "svamp", "mathqa-numeric", "arithmetic"]


def write_json(path, rows):
    path.write_text(json.dumps(rows))
    return path


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return path


@pytest.mark.parametrize("name", sorted(TASKS))
@pytest.mark.parametrize("style", STYLES)
def test_every_task_exists_in_both_styles(name, style):
    task = get_task(name, style=style)
    assert task.name == name and task.style == style


def test_unknown_task_or_style_is_a_clear_error():
    with pytest.raises(ReftuneError, match="unknown task 'gsm9k'.*arithmetic"):
        get_task("gsm9k")
    with pytest.raises(ReftuneError, match="unknown style 'latex'.*'nl', 'python'"):
        get_task("gsm8k", style="latex")


def test_prompt_and_nl_target_follow_the_authors_format():
    task = get_task("gsm8k", style="nl")
    example = Example("x", "How many?", 72.0, "Step one.\n")
    assert task.prompt(example) == "Question:\nHow many?\nAnswer reasoning:\n"
    assert task.target(example) == "Step one.\nTherefore, the answer is: 72"


def test_python_target_is_the_program_and_prefix_opens_it():
    task = get_task("svamp", style="python")
    program = 'def solution():\n    """q"""\n    return 3\n'
    example = Example("x", "q", 3.0, program)
    assert task.target(example) == program.strip()
    assert task.program_prefix(example) == 'def solution():\n    """q"""\n'
    assert task.target(example).startswith(task.program_prefix(example))


def test_target_without_a_cot_in_the_style_is_a_clear_error(tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [{"question": "q?", "answer": "It is 2.\n#### 2"}])
    [example] = get_task("gsm8k", style="python").load("train", path)
    assert example.cot == ""  # natural language is not a program
    with pytest.raises(ReftuneError, match="no 'python' chain of thought"):
        get_task("gsm8k", style="python").target(example)


def test_gsm8k_jsonl_strips_calculator_annotations(tmp_path):
    row = {"question": "Q?", "answer": "She sold 48/2 = <<48/2=24>>24 clips.\n#### 1,024"}
    [example] = get_task("gsm8k").load("train", write_jsonl(tmp_path / "train.jsonl", [row]))
    assert example.cot == "She sold 48/2 = 24 clips."
    assert example.answer == 1024.0
    assert example.id == "gsm8k_0"


def test_reft_json_arrays_load_with_their_ids(tmp_path):
    rows = [{"item_id": "svamp_3", "question": "Q?", "answer_cot": "a b c the answer is 5", "answer_value": "5.0"},
            {"item_id": "svamp_4", "question": "R?", "answer_value": "7"}]
    examples = get_task("svamp").load("train", write_json(tmp_path / "s.json", rows))
    assert [(e.id, e.answer, bool(e.cot)) for e in examples] == [("svamp_3", 5.0, True), ("svamp_4", 7.0, False)]


def test_svamp_original_format_derives_both_cot_styles(tmp_path):
    row = {"ID": "chal-1", "Body": "Each pack costs 76 dollars. A discount of 25 dollars applies",
           "Question": "How much do you pay?", "Equation": "( 76.0 - 25.0 )", "Answer": 51.0}
    path = write_json(tmp_path / "SVAMP.json", [row])
    for style in STYLES:
        task = get_task("svamp", style=style)
        [example] = task.load("test", path)
        assert example.question.endswith("applies How much do you pay?")
        assert task.extract_answers([task.target(example)]) == [51.0]


def test_a_folder_resolves_to_the_split_file(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"question": "q", "answer": "x\n#### 1"}])
    write_jsonl(tmp_path / "test.jsonl", [{"question": "q", "answer": "x\n#### 2"}])
    assert get_task("gsm8k").load("test", tmp_path)[0].answer == 2.0
    with pytest.raises(ReftuneError, match="cannot tell which file.*dev"):
        get_task("gsm8k").load("dev", tmp_path)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ReftuneError, match="nope.jsonl does not exist"):
        get_task("gsm8k").load("train", tmp_path / "nope.jsonl")


def test_malformed_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "q", "answer": "#### 1"}\n\n{"question": "q", "answer": \n')
    with pytest.raises(ReftuneError, match=r"line 3 of .*bad.jsonl is not valid JSON"):
        get_task("gsm8k").load("train", path)


def test_malformed_json_array_names_file_and_position(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[{"question": "q", "answer_value": "1"},\n {oops}]')
    with pytest.raises(ReftuneError, match=r"bad.json is not valid JSON \(line 2"):
        get_task("svamp").load("train", path)


@pytest.mark.parametrize("row, message", [
    ({"question": "", "answer_value": "1"}, "record 0 of .* empty or missing question"),
    ({"question": "q?", "answer_value": ""}, "record 0 of .* empty or missing answer"),
    ({"question": "q?"}, "record 0 of .* match no known format"),
    ({"answer_value": "3"}, "record 0 of .* match no known format"),
    ({"question": "q?", "answer_value": "seven"}, "answer 'seven' is not a valid answer"),
    ({"question": "q?", "answer": "no final line"}, "looks like GSM8K .* no final '#### N' line"),
    (["not", "an", "object"], "record 0 of .* is a list, not a JSON object"),
])
def test_bad_records_are_clear_errors(tmp_path, row, message):
    with pytest.raises(ReftuneError, match=message):
        get_task("gsm8k").load("train", write_json(tmp_path / "rows.json", [row]))


def test_empty_file_is_a_clear_error(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ReftuneError, match="no examples"):
        get_task("gsm8k").load("train", tmp_path / "empty.jsonl")


def test_offline_hub_error_says_which_file_to_pass(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ReftuneError, match="openai/gsm8k.*Pass a local file"):
        get_task("gsm8k").load("train")


def test_mathqa_numeric_has_no_hub_dataset():
    with pytest.raises(ReftuneError, match="no hub dataset: pass a data file"):
        get_task("mathqa-numeric").load("test")


@pytest.mark.parametrize("line", [
    "a ) 38 , b ) 27.675 , c ) 30 , d ) data inadequate , e ) none of these",
    "['a ) 38', 'b ) 27.675', 'c ) 30', 'd ) data inadequate', 'e ) none of these']",
])
def test_mathqa_options_parse_from_both_spellings(line):
    options = parse_options(line)
    assert options == (("a", "38"), ("b", "27.675"), ("c", "30"), ("d", "data inadequate"),
                       ("e", "none of these"))
    assert format_options(options) == "a ) 38 , b ) 27.675 , c ) 30 , d ) data inadequate , e ) none of these"


def test_mathqa_question_without_options_is_a_clear_error(tmp_path):
    path = write_json(tmp_path / "m.json", [{"item_id": "mathqa_1", "question": "how much ?", "answer_value": "a"}])
    with pytest.raises(ReftuneError, match="must end with a line of options.*mathqa-numeric"):
        get_task("mathqa").load("test", path)


def test_mathqa_answers_are_letters_and_a_number_is_no_answer():
    task = get_task("mathqa", style="nl")
    completions = ["Therefore, the answer is: (B)", "Therefore, the answer is: b ) 27.675",
                   "Therefore, the answer is: 27.675", "no trigger"]
    assert task.extract_answers(completions) == ["b", "b", None, None]
    assert task.is_correct("b", "b") and task.is_correct("b", "B") and not task.is_correct("c", "b")


@pytest.mark.parametrize("name", NUMERIC_TASKS)
def test_numeric_golds_are_accepted_as_strings_or_numbers(name):
    task = get_task(name)
    for gold in ["72", "72.0", "1,072", 72, 72.0]:
        expected = 1072.0 if gold == "1,072" else 72.0
        assert task.is_correct(expected, gold)
