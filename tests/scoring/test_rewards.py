import pytest

from reftune.scoring.rewards import CORRECT_REWARD, NO_ANSWER_REWARD, PARTIAL_REWARD, score_completions
from reftune.tasks import get_task

TRIGGER = "Therefore, the answer is: "


def test_numeric_reward_is_one_partial_or_zero():
    task = get_task("gsm8k", style="nl")
    completions = [TRIGGER + "$1,234.", TRIGGER + "1230", "I think it is 1234", TRIGGER + "unsure"]
    assert score_completions(task, completions, ["1,234"] * 4) == [
        CORRECT_REWARD, PARTIAL_REWARD, NO_ANSWER_REWARD, NO_ANSWER_REWARD]


def test_partial_reward_needs_a_parsed_answer():
    task = get_task("svamp", style="nl")
    assert score_completions(task, ["steps but no trigger"], ["5"]) == [0.0]
    assert score_completions(task, [TRIGGER + "6"], ["5"]) == [0.1]


def test_golds_may_be_strings_or_numbers():
    task = get_task("svamp", style="nl")
    assert score_completions(task, [TRIGGER + "203"] * 4, ["203.0", "203", 203, 203.0]) == [1.0] * 4
    assert score_completions(task, [TRIGGER + "0.33"], ["0.3333333333333333"]) == [1.0]


def test_multiple_choice_pays_no_partial_reward():
    task = get_task("mathqa", style="nl")
    completions = [TRIGGER + "(c)", TRIGGER + "d", TRIGGER + "192", "no trigger, c"]
    assert score_completions(task, completions, ["c"] * 4) == [1.0, 0.0, 0.0, 0.0]


def test_mathqa_numeric_keeps_the_partial_reward():
    task = get_task("mathqa-numeric", style="nl")
    assert score_completions(task, [TRIGGER + "191", TRIGGER + "192"], ["192.0"] * 2) == [0.1, 1.0]


def test_python_style_runs_programs_and_a_failed_program_earns_nothing():
    task = get_task("gsm8k", style="python")
    programs = ["def solution():\n    return 6 * 12",
                "def solution():\n    return 70",
                "def solution():\n    return 1 / 0",
                "def solution():\n    return 'seventy-two'",
                "def solution(:"]
    assert score_completions(task, programs, [72] * 5) == [1.0, 0.1, 0.0, 0.0, 0.0]


def test_mcq_program_must_return_the_letter():
    task = get_task("mathqa", style="python")
    programs = ["def solution():\n    return 'b'", "def solution():\n    return 27.675",
                "def solution():\n    return 'c'"]
    assert score_completions(task, programs, ["b"] * 3) == [1.0, 0.0, 0.0]


def test_lengths_must_match():
    with pytest.raises(ValueError, match="2 completions but 1 golds"):
        score_completions(get_task("gsm8k"), ["a", "b"], ["1"])
