"""The one CoT check: final answer against the gold, then every arithmetic step the CoT states."""
import json

import pytest

from reftune.scoring.verification import (VERDICT_STATUSES, StepError, Verdict, describe_step_error, step_errors,
                                         verify_cots)
from reftune.tasks import get_task


# ---- stated steps ------------------------------------------------------------------------------------
def test_a_wrong_equation_is_reported_with_its_line_and_both_values():
    errors = step_errors("Tom has 5 apples.\nHe eats 2, so 5 - 2 = 4 apples are left.\n3 + 3 = 6")
    assert errors == [StepError(line=2, text="5 - 2 = 4", stated=4.0, computed=3.0)]
    assert describe_step_error(errors[0]) == "line 2: 5 - 2 = 4 (is 3)"


def test_a_calculator_note_with_a_wrong_result_is_a_step_error():
    errors = step_errors("She sold 48/2 = <<48/2=25>>25 clips in May.")
    assert [(e.line, e.text, e.stated, e.computed) for e in errors] == [(1, "<<48/2=25>>", 25.0, 24.0)]


def test_the_svamp_computing_sentence_is_recomputed():
    errors = step_errors("Computing ( ( 4.0 - 2.0 ) + 3.0 ) gives 1.")
    assert [(e.text, e.stated, e.computed) for e in errors] == [("( ( 4.0 - 2.0 ) + 3.0 ) gives 1", 1.0, 5.0)]
    assert step_errors("Computing ( 29.0 * 7.0 ) gives 203.") == []


@pytest.mark.parametrize("cot", [
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.",
    "Each gets 100/3 = 33.33 dollars.",  # rounded to the decimals written
    "That is 2/3 = 0.67 of the cake.",
    "They fill 25 / 6 = 4 whole bags.",  # whole things: floor or ceiling
    "It costs $1,200 + $300 = $1,500.",
    "He works 0.2 x 50 = $10 and 3 × 4 ÷ 2 = 6 and 5 * (2 + 1) = 15",
    "20% * 50 = 10 and 100% - 20% = 80% and 100 - 20% = 80%",
    "So 5 + 3 = 8 - 2 = 6, a running chain.",
    "He gets 28 / 1/5 = 140 cups.",  # a spaced slash before an unspaced fraction
    "$1 / 2 = 50 cents",
])
def test_right_steps_in_the_usual_spellings_raise_no_alarm(cot):
    assert step_errors(cot) == []


@pytest.mark.parametrize("prose", [
    "Solve 2x + 3 = 7 for x, then 3x-5=16.",  # algebra
    "The sun sets at 6:00+48=6:48 PM.",  # a time
    "There are 60 students x 2/3 = 40 students.",  # units inside the arithmetic
    "Day 4:2(50+100+120)=540",  # implicit multiplication
    "He uses 600 x 30 = 18 000 watts.",  # a space as thousands separator
    "Subtract X*2 - $40 = $250.",
    "In 2019 = a good year, 5 = five.",
])
def test_prose_that_does_not_read_as_arithmetic_is_skipped(prose):
    assert step_errors(prose) == []


@pytest.mark.parametrize("cot, text", [
    ("So 10 / 0 = 5 apples each.", "10 / 0 = 5"),
    ("She sold <<10/0=5>>5 clips.", "<<10/0=5>>"),
    ("Computing ( 10.0 / ( 2.0 - 2.0 ) ) gives 5.", "( 10.0 / ( 2.0 - 2.0 ) ) gives 5"),
    ("Each share is 10/0 = 5.", "10/0 = 5"),
])
def test_a_stated_division_by_zero_fails_its_step(cot, text):
    [error] = step_errors(cot)
    assert (error.text, error.stated) == (text, 5.0)
    assert describe_step_error(error) == f"line 1: {text} (divides by zero)"


def test_a_cot_whose_step_divides_by_zero_is_not_correct():
    task = get_task("gsm8k", style="nl")
    [verdict] = verify_cots(task, ["Each of 0 friends gets 10 / 0 = 5.\nTherefore, the answer is: 5"], ["5"])
    assert (verdict.status, verdict.detail) == ("wrong_step", "line 1: 10 / 0 = 5 (divides by zero)")


def test_each_wrong_step_of_a_chain_is_reported_once():
    errors = step_errors("4080 + 4080 / 2 = 4000 + 2040 = <<4080+4080/2=6120>>6120 years.")
    assert [(e.stated, e.computed) for e in errors] == [(6040.0, 6120.0), (6120.0, 6040.0)]


# ---- verdicts ----------------------------------------------------------------------------------------
def test_nl_verdicts_take_the_first_status_that_applies():
    task = get_task("gsm8k", style="nl")
    cots = ["5 + 3 = 8 so 8.\nTherefore, the answer is: 8",
            "5 + 3 = 9\nTherefore, the answer is: 8",
            "5 + 3 = 9\nTherefore, the answer is: 9",
            "5 + 3 = 8, I think."]
    verdicts = verify_cots(task, cots, ["8", 8.0, 8, "8"])
    assert [v.status for v in verdicts] == ["correct", "wrong_step", "wrong_answer", "no_answer"]
    assert [v.answer for v in verdicts] == [8.0, 8.0, 9.0, None]
    assert verdicts[0].ok and not any(v.ok for v in verdicts[1:])
    assert verdicts[0].detail == "" and verdicts[1].detail == "line 1: 5 + 3 = 9 (is 8)"
    assert verdicts[2].detail == "answer 9 but the gold is 8"
    assert verdicts[2].step_errors == verdicts[1].step_errors  # kept for people even when the answer is wrong
    assert all(v.status in VERDICT_STATUSES and v.output == "" for v in verdicts)


@pytest.mark.slow
def test_python_verdicts_tell_a_timeout_from_an_error_in_one_sandbox_call():
    task = get_task("gsm8k", style="python")
    programs = ["def solution():\n    a = 48 / 2\n    result = a + 48\n    return result",
                "def solution():\n    return 73",
                "def solution():\n    return 1 / 0",
                "def solution():\n    while True:\n        pass",
                "def solution():\n    return 'many'"]
    verdicts = verify_cots(task, programs, [72] * 5)
    assert [v.status for v in verdicts] == ["correct", "wrong_answer", "program_error", "timeout", "no_answer"]
    assert [v.output for v in verdicts] == ["72.0", "73", "ZeroDivisionError: division by zero", "timeout", "'many'"]
    assert "ZeroDivisionError" in verdicts[2].detail


def test_multiple_choice_answers_are_compared_as_letters():
    task = get_task("mathqa", style="nl")
    verdicts = verify_cots(task, ["Therefore, the answer is: (B)", "Therefore, the answer is: c"], ["b", "b"])
    assert [(v.status, v.answer) for v in verdicts] == [("correct", "b"), ("wrong_answer", "c")]


def test_verdict_is_a_frozen_record():
    verdict = Verdict("correct", 1.0, "")
    with pytest.raises(AttributeError):
        verdict.status = "timeout"


# ---- real data ---------------------------------------------------------------------------------------
def test_svamp_chal_680_is_reported_as_a_wrong_step_with_its_line(shared_data):
    task = get_task("svamp", style="nl")
    example = next(e for e in task.load("train", shared_data / "svamp" / "SVAMP.json") if e.id == "chal-680")
    [verdict] = verify_cots(task, [task.target(example)], [example.answer])
    assert verdict.status == "wrong_step"
    assert verdict.detail == "line 1: ( ( 4.0 - 2.0 ) + 3.0 ) gives 1 (is 5)"


@pytest.mark.slow
def test_few_gsm8k_train_rationales_state_a_wrong_step(shared_data):
    lines = (shared_data / "gsm8k" / "train.jsonl").read_text().splitlines()
    rationales = [json.loads(line)["answer"].rpartition("####")[0] for line in lines]
    flagged = {index: step_errors(rationale) for index, rationale in enumerate(rationales)}
    flagged = {index: errors for index, errors in flagged.items() if errors}
    print(f"{len(flagged)} of {len(rationales)} GSM8K train rationales state a wrong step")
    assert len(rationales) == 7473
    assert 0 < len(flagged) < 0.02 * len(rationales)
    # "Jerry took 2*8 = 24 hours": a real slip in the data.
    assert [(e.text, e.computed) for e in flagged[4691]] == [("2*8 = 24", 16.0)]
