import pytest

from reftune.tasks.answers import answer_text, format_number, numbers_equal, parse_choice, parse_number


@pytest.mark.parametrize("text, expected", [
    ("72", 72.0), ("1,234", 1234.0), ("1,234,567.5", 1234567.5), ("$18", 18.0), ("$1,234.50.", 1234.5),
    ("€5", 5.0), ("-5", -5.0), ("−5", -5.0), ("-$5", -5.0), ("$-5", -5.0), ("3.75", 3.75), (".5", 0.5),
    ("72.", 72.0), ("3/4", 0.75), ("3 / 4 of the cake", 0.75), ("25%", 25.0), ("12.5 %", 12.5),
    ("72 clips.", 72.0), ("**72**", 72.0), ("<208>.", 208.0), ("x = 9", 9.0), ("3,4", 3.0),
])
def test_parse_number_accepts_the_usual_spellings(text, expected):
    assert parse_number(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", [None, "", "seventy two", "$", "-", "1/0", "n/a"])
def test_parse_number_returns_none_without_a_number(text):
    assert parse_number(text) is None


def test_answer_text_takes_the_last_trigger():
    completion = "the answer is: 3 ... wait. Therefore, the answer is: 5"
    assert answer_text(completion) == "5"
    assert answer_text("The answer is <208>.") == "<208>."
    assert answer_text("no trigger here: 5") is None


@pytest.mark.parametrize("text, expected", [
    ("b", "b"), ("B", "b"), ("(b)", "b"), ("( b )", "b"), ("b )", "b"), ("b)", "b"), ("b ) 27.675", "b"),
    ("b.", "b"), ("[c]", "c"), ("option d", "d"), ("E", "e"), ("**a**", "a"),
])
def test_parse_choice_accepts_the_usual_spellings(text, expected):
    assert parse_choice(text) == expected


@pytest.mark.parametrize("text", [None, "", "f", "38", "bc", "about 5", "the first one"])
def test_parse_choice_rejects_what_is_not_a_letter(text):
    assert parse_choice(text) is None


def test_numbers_equal_uses_the_papers_tolerance():
    assert numbers_equal(0.333, 1 / 3)
    assert numbers_equal(2.0, 2.01)
    assert not numbers_equal(2.0, 2.02)
    assert not numbers_equal(None, 2.0)


@pytest.mark.parametrize("value, text", [(72.0, "72"), (0.5, "0.5"), (-3.0, "-3"), (1 / 3, "0.333333")])
def test_format_number_writes_golds_plainly(value, text):
    assert format_number(value) == text
