"""The figures: outcomes, difficulty, answer distribution, rollouts by step, two runs compared."""
from reftune.review.records import Record, Sample
from reftune.review.stats import (accuracy_by_difficulty, answer_distribution, by_step, compare, outcome_counts,
                                  solve_rate_histogram)
from reftune.tasks import get_task


def rec(record_id: str, right: bool, words: int = 3, source: int = 0) -> Record:
    status = "correct" if right else "wrong_answer"
    return Record(0, source, record_id, " ".join(["w"] * words), 1.0, (Sample("t", 1.0 if right else 2.0, status),))


def test_compare_lists_the_questions_that_flipped_each_way():
    a = [rec("q1", True), rec("q2", True), rec("q3", False), rec("q4", False), rec("q5", True)]
    b = [rec("q1", True, source=1), rec("q2", False, source=1), rec("q3", True, source=1),
         rec("q4", False, source=1), rec("q6", True, source=1)]
    result = compare(a, b)
    assert (result.common, result.both_right, result.both_wrong, result.only_a, result.only_b) == (4, 1, 1, 1, 1)
    assert [pair[0].id for pair in result.right_to_wrong] == ["q2"]
    assert [pair[1].id for pair in result.wrong_to_right] == ["q3"]


def test_accuracy_by_difficulty_bins_questions_by_length():
    records = [rec(f"q{n}", n < 5, words=n + 1) for n in range(10)]
    bars = accuracy_by_difficulty(records, bins=2)
    assert [(bar.label, bar.value, bar.count) for bar in bars] == [("1-5 words", 1.0, 5), ("6-10 words", 0.0, 5)]


def test_outcome_counts_and_solve_rates_sum_to_the_questions():
    records = [rec("a", True), rec("b", False), rec("c", False)]
    assert {bar.label: bar.count for bar in outcome_counts(records)} == {"correct": 1, "wrong": 2}
    assert sum(bar.count for bar in solve_rate_histogram(records)) == 3


def test_answer_distribution_marks_the_gold_and_the_vote():
    samples = tuple(Sample("t", answer, "") for answer in (5.0, 6.0, 5.0, None))
    record = Record(0, 0, "q", "q", 5.0, samples, vote=5.0, vote_correct=True)
    found = answer_distribution(record, get_task("gsm8k").is_correct)
    assert [(a.answer, a.count, a.correct, a.won) for a in found] == [(5.0, 2, True, True), (6.0, 1, False, False),
                                                                      (None, 1, False, False)]


def test_by_step_averages_reward_accuracy_and_length_per_step():
    samples = (Sample("ab", 1.0, "correct", 1.0, step=0), Sample("abcd", None, "no_answer", 0.0, step=0),
               Sample("ab", 1.0, "correct", 1.0, step=5))
    steps = by_step([Record(0, 0, "q", "q", 1.0, samples)])
    assert [(s.step, s.samples, s.mean_reward, s.accuracy, s.mean_length) for s in steps] == \
        [(0, 2, 0.5, 0.5, 3.0), (5, 1, 1.0, 1.0, 2.0)]


def test_status_counts_count_samples_most_common_first():
    from reftune.review.stats import status_counts

    records = [rec("a", True), rec("b", False), rec("c", False)]
    assert [(bar.label, bar.count) for bar in status_counts(records)] == [("wrong answer", 2), ("correct", 1)]
