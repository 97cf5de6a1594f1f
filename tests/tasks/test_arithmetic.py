import pytest

from reftune.errors import ReftuneError
from reftune.scoring.rewards import score_completions
from reftune.tasks import get_task
from reftune.tasks.arithmetic import STRATEGIES, ArithmeticConfig, cot, generate_problems, split_of

SMALL = {"sizes": {"train": 300, "dev": 60, "test": 60}}


def test_same_seed_same_problems_and_another_seed_differs():
    first = get_task("arithmetic", **SMALL).load("train")
    assert first == get_task("arithmetic", **SMALL).load("train")
    assert first != get_task("arithmetic", seed=1, **SMALL).load("train")


def test_splits_cannot_overlap_whatever_the_seeds():
    questions = {
        split: {e.question for seed in (0, 1, 2) for e in get_task("arithmetic", seed=seed, **SMALL).load(split)}
        for split in ("train", "dev", "test")
    }
    assert not questions["train"] & questions["dev"]
    assert not questions["train"] & questions["test"]
    assert not questions["dev"] & questions["test"]
    config = ArithmeticConfig(**SMALL)
    assert all(split_of(problem) == "test" for problem, _ in generate_problems(config, "test"))


def test_problems_are_distinct_and_respect_the_step_knobs():
    config = ArithmeticConfig(min_steps=3, max_steps=5, max_number=30, **SMALL)
    problems = [problem for problem, _ in generate_problems(config, "train")]
    assert len({p.question for p in problems}) == len(problems) == 300
    assert {len(p.events) for p in problems} == {3, 4, 5}
    assert all(p.answer >= 0 for p in problems)


@pytest.mark.parametrize("style", ["nl", "python"])
def test_every_reasoning_path_reaches_the_gold_answer(style):
    task = get_task("arithmetic", style=style, **SMALL)
    problems = [problem for problem, _ in generate_problems(task.config, "dev")]
    for strategy in STRATEGIES:
        completions = [cot(p, style, strategy) for p in problems]
        if style == "nl":
            completions = [c + f"\nTherefore, the answer is: {p.answer}" for c, p in zip(completions, problems)]
        assert score_completions(task, completions, [p.answer for p in problems]) == [1.0] * len(problems)


def test_a_question_admits_several_distinct_reasoning_paths():
    problems = [problem for problem, _ in generate_problems(ArithmeticConfig(**SMALL), "dev")]
    distinct = [len({cot(p, "nl", strategy) for strategy in STRATEGIES}) for p in problems]
    assert min(distinct) == len(STRATEGIES)


def test_gold_cots_mix_the_strategies():
    _, strategies = zip(*generate_problems(ArithmeticConfig(**SMALL), "train"))
    assert set(strategies) == set(STRATEGIES)


@pytest.mark.parametrize("knobs, message", [
    ({"min_steps": 3, "max_steps": 2}, "min_steps <= max_steps"),
    ({"max_number": 1}, "max_number must be >= 3"),
    ({"sizes": {"validation": 3}}, "unknown splits"),
    ({"colour": "red"}, "unexpected keyword argument 'colour'.*the knobs are"),
])
def test_bad_knobs_are_clear_errors(knobs, message):
    with pytest.raises(ReftuneError, match=message):
        get_task("arithmetic", **knobs)


def test_unknown_split_and_too_small_space_are_clear_errors():
    with pytest.raises(ReftuneError, match="unknown split 'validation'"):
        get_task("arithmetic").load("validation")
    with pytest.raises(ReftuneError, match="fewer than 100000 distinct"):
        get_task("arithmetic", min_steps=1, max_steps=1, max_number=3, sizes={"dev": 100_000}).load("dev")
