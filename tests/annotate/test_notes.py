"""annotate --source notes: GSM8K calculator notes -> programs, SVAMP equations -> both styles."""
import json
import re

import pytest

from reftune.annotate.notes import notes_to_program
from reftune.cli import main
from reftune.execution import run_programs
from reftune.tasks import get_task
from reftune.tasks.answers import numbers_equal

pytestmark = pytest.mark.costly(35)  # about this many seconds in all: costly files start first

NATALIA = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
           "How many clips did Natalia sell altogether in April and May?")
NATALIA_RATIONALE = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
                     "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.")


def test_each_note_is_one_named_assignment_and_later_results_are_variables():
    conversion = notes_to_program(NATALIA, NATALIA_RATIONALE, 72)
    assert conversion.program.splitlines() == [
        "def solution():", f'    """{NATALIA}"""', "    clips_in_may = 48 / 2",
        "    clips_altogether_in_april = 48 + clips_in_may", "    result = clips_altogether_in_april",
        "    return result"]
    assert run_programs([conversion.program])[0].value == 72


def test_names_come_from_words_never_numbered_placeholders_when_words_exist():
    rationale = ("Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n"
                 "Working 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.")
    names = [step.name for step in notes_to_program("q", rationale, 10).steps]
    assert names == ["earns_per_minute", "earned"]
    assert not any(re.fullmatch(r"v\d+", name) for name in names)


def test_the_result_is_the_last_step_that_gives_the_gold():
    rationale = "He has 3*4 = <<3*4=12>>12 eggs.\nThat is 12/2 = <<12/2=6>>6 boxes, so 12 eggs."
    conversion = notes_to_program("q", rationale, 12)
    assert conversion.program.endswith("    result = eggs\n    return result")
    assert len(conversion.steps) == 1


def test_a_rationale_without_notes_says_why_there_is_no_program():
    conversion = notes_to_program("q", "She has two apples, then three.", 5)
    assert conversion.program == "" and "no readable calculator notes" in conversion.problem


def test_quotes_and_backslashes_in_the_question_keep_the_docstring_whole():
    conversion = notes_to_program('He said """hi""" \\ "ok"', "2+3 = <<2+3=5>>5 apples", 5)
    assert run_programs([conversion.program])[0].value == 5


@pytest.mark.slow
def test_svamp_equations_give_both_styles_and_chal_680_is_rejected_for_its_wrong_step(tmp_path, shared_data):
    data = shared_data / "svamp" / "SVAMP.json"
    for style in ("nl", "python"):
        assert main(["annotate", "--task", "svamp", "--style", style, "--data", str(data), "--output",
                     str(tmp_path / style), "--no-progress"]) == 0
    nl_rejects = [json.loads(line) for line in (tmp_path / "nl" / "rejects.jsonl").read_text().splitlines()]
    assert [(r["item_id"], r["reason"]) for r in nl_rejects] == [("chal-680", "wrong_step")]
    assert nl_rejects[0]["detail"] == "line 1: ( ( 4.0 - 2.0 ) + 3.0 ) gives 1 (is 5)"
    python = json.loads((tmp_path / "python" / "annotate.json").read_text())
    assert python["covered"] == 999 and python["verdicts"] == {"correct": 999, "wrong_answer": 1}
    loaded = get_task("svamp", style="python").load("train", tmp_path / "python" / "annotated.json")
    assert len(loaded) == 999 and all(example.cot.startswith("def solution():") for example in loaded)


@pytest.mark.slow
def test_gsm8k_train_notes_give_verified_programs_for_at_least_90_percent(tmp_path, shared_data):
    output = tmp_path / "gsm8k-python"
    assert main(["annotate", "--task", "gsm8k", "--style", "python", "--data",
                 str(shared_data / "gsm8k" / "train.jsonl"), "--output", str(output), "--no-progress"]) == 0
    summary = json.loads((output / "annotate.json").read_text())
    print(json.dumps(summary))
    assert summary["questions"] == 7473 and summary["coverage"] >= 0.90
    task = get_task("gsm8k", style="python")
    kept = task.load("train", output / "annotated.json")
    assert len(kept) == summary["covered"]
    assert all(not re.search(r"\bv\d+ =", example.cot) for example in kept)
    # annotate ran every kept program in the sandbox against the gold; run every 15th again here.
    events = [json.loads(line) for line in (output / "journal.jsonl").read_text().splitlines()]
    assert all(e["reason"] == "correct" for e in events if e["event"] == "verified")
    again = kept[::15]
    values = run_programs([example.cot for example in again])
    assert all(numbers_equal(task.answer_from_value(v.value), example.answer) for v, example in zip(values, again))
