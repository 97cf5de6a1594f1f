"""The one check of a chain of thought, used by `annotate`, the review app's live re-check and `check`.

A CoT passes when its final answer equals the gold (a P-CoT program is run in the sandbox) and, for
N-CoT, when every arithmetic step it states is right: `a op b = c` statements, GSM8K's calculator notes
`<<a*b=c>>` and the SVAMP-derived "Computing EXPR gives V". Steps are read conservatively: a statement
that does not parse as arithmetic is skipped, so prose never raises a false alarm.

>>> step_errors("She has 4 - 2 + 3 = 1 apple.\\nSo 1 * 2 = 2.")
[StepError(line=1, text='4 - 2 + 3 = 1', stated=1.0, computed=5.0)]
>>> step_errors("Natalia sold 48/2 = <<48/2=24>>24 clips. 100/3 = 33.33 each. 20% * 50 = 10 left.")
[]
>>> describe_step_error(step_errors("Each gets 10 / 0 = 5 apples.")[0])
'line 1: 10 / 0 = 5 (divides by zero)'
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from reftune.tasks.answers import format_number, numbers_equal

VERDICT_STATUSES = ("correct", "wrong_answer", "no_answer", "program_error", "timeout", "wrong_step")


@dataclass(frozen=True)
class StepError:
    """An arithmetic step whose stated result is not what its arithmetic gives."""

    line: int  # 1-based line of the CoT where the step stands
    text: str  # the step as written, e.g. "( ( 4.0 - 2.0 ) + 3.0 ) gives 1" or "<<48/2=25>>"
    stated: float  # the value the CoT states
    computed: float  # what the stated arithmetic gives; NaN where it divides by zero


@dataclass(frozen=True)
class Verdict:
    """What checking one CoT against its gold gave."""

    status: str  # one of VERDICT_STATUSES
    answer: object  # extracted answer (the task's normalised form), None where there is none
    detail: str  # one line for people; "" when correct
    step_errors: tuple[StepError, ...] = ()  # N-CoT: every wrong stated step, in order
    output: str = ""  # P-CoT: repr of the returned value or the error text; "" for N-CoT

    @property
    def ok(self) -> bool:
        return self.status == "correct"


# ---- verifying whole CoTs --------------------------------------------------------------------------
def verify_cots(task, cots: list[str], golds: list) -> list[Verdict]:
    """One Verdict per CoT. P-CoT programs run in ONE sandbox call. The status is the first that
    applies: no answer / program error / timeout, then wrong answer, then "wrong_step" for a right
    answer whose stated steps are wrong (right for the wrong reasons)."""
    if len(cots) != len(golds):
        raise ValueError(f"{len(cots)} CoTs but {len(golds)} golds")
    if task.style == "python":
        from reftune.execution import run_programs  # starts the sandbox pool; N-CoT checks never need it

        results = run_programs(list(cots))
        return [_program_verdict(task, result, gold) for result, gold in zip(results, golds)]
    answers = task.extract_answers(list(cots))
    return [_text_verdict(task, cot, answer, gold) for cot, answer, gold in zip(cots, answers, golds)]


def wrong_step_share(verdicts: list[Verdict]) -> float | None:
    """Of the CoTs whose answer is right, the share whose stated arithmetic is wrong: right for the
    wrong reasons, a sign of reward hacking. None when no answer is right.

    >>> wrong_step_share([Verdict("correct", 1, ""), Verdict("wrong_step", 2, "x"), Verdict("no_answer", None, "")])
    0.5
    """
    right = [v for v in verdicts if v.status in ("correct", "wrong_step")]
    return sum(v.status == "wrong_step" for v in right) / len(right) if right else None


def _program_verdict(task, result, gold) -> Verdict:
    if result.error == "timeout":
        return Verdict("timeout", None, "the program ran past the time limit", output="timeout")
    if result.error is not None:
        return Verdict("program_error", None, f"the program failed: {result.error}", output=result.error)
    output = repr(result.value)
    answer = task.answer_from_value(result.value)
    if answer is None:
        return Verdict("no_answer", None, f"the program returned {output[:80]}, not an answer", output=output)
    if not task.is_correct(answer, gold):
        return Verdict("wrong_answer", answer, _wrong_answer_detail(task, answer, gold), output=output)
    return Verdict("correct", answer, "", output=output)


def _text_verdict(task, cot: str, answer, gold) -> Verdict:
    errors = tuple(step_errors(cot))
    if answer is None:
        return Verdict("no_answer", None, "no final answer after 'the answer is'", errors)
    if not task.is_correct(answer, gold):
        return Verdict("wrong_answer", answer, _wrong_answer_detail(task, answer, gold), errors)
    if errors:
        return Verdict("wrong_step", answer, describe_step_error(errors[0], more=len(errors) - 1), errors)
    return Verdict("correct", answer, "", errors)


def _wrong_answer_detail(task, answer, gold) -> str:
    return f"answer {task.format_answer(answer)} but the gold is {task.format_answer(task.normalize_gold(gold))}"


def describe_step_error(error: StepError, more: int = 0) -> str:
    """'line 3: 4 - 2 + 3 = 1 (is 5)', plus how many more wrong steps follow."""
    result = "divides by zero" if math.isnan(error.computed) else f"is {format_number(round(error.computed, 6))}"
    text = f"line {error.line}: {error.text} ({result})"
    return text + (f"; {more} more wrong step{'s' if more > 1 else ''}" if more else "")


# ---- finding and recomputing stated steps ------------------------------------------------------------
_NOTE = re.compile(r"<<([^<>=]*)=([^<>]*)>>")
_COMPUTING = re.compile(r"Computing\s+(.+?)\s+gives\s+(-?\$?[\d,]*\.?\d+%?)")
_TOKEN = re.compile(
    r"""(?P<fraction>(?<![\d,./])\d+/\d+(?![\d,./]))
      | (?P<number>\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?|\$?\.\d+%?)
      | (?P<op>[-+*/×÷−–]|(?<=\s)[xX](?=\s))
      | (?P<word>[A-Za-z]+)
      | (?P<open>\() | (?P<close>\))
      | (?P<space>\s+)
      | (?P<other>.)""",
    re.VERBOSE,
)
_OPERATORS = {"+": "+", "-": "-", "−": "-", "–": "-", "*": "*", "x": "*", "X": "*", "×": "*", "/": "/", "÷": "/"}


@dataclass(frozen=True)
class _Token:
    kind: str  # "number", "fraction" (an unspaced 2/3, read as one value), "op", "open", "close", "other"
    text: str  # as written
    start: int  # offset in the line
    end: int


def step_errors(cot: str) -> list[StepError]:
    """Recompute every arithmetic step a CoT states: `a op b = c` statements (chains, parentheses,
    + - * / x × ÷, numbers with commas, $ and %), GSM8K calculator notes <<expr=value>>, and the
    SVAMP-derived "Computing EXPR gives V". Anything it cannot parse is skipped: no false alarm on prose."""
    errors: list[StepError] = []
    for number, line in enumerate(cot.splitlines(), start=1):
        found = _note_errors(number, line) + _computing_errors(number, line)
        found += _equation_errors(number, _NOTE.sub("", line))
        for error in found:
            if not any(_same_step(e, error) for e in errors):
                errors.append(error)
    return errors


def _same_step(a: StepError, b: StepError) -> bool:
    """The same line stating the same value for the same result (NaN, a division by zero, equal to itself)."""
    same_result = a.computed == b.computed or (math.isnan(a.computed) and math.isnan(b.computed))
    return a.line == b.line and a.stated == b.stated and same_result


def _note_errors(line_number: int, line: str) -> list[StepError]:
    errors = []
    for match in _NOTE.finditer(line):
        error = _check_step(line_number, match.group(0), match.group(1), match.group(2))
        if error:
            errors.append(error)
    return errors


def _computing_errors(line_number: int, line: str) -> list[StepError]:
    errors = []
    for match in _COMPUTING.finditer(line):
        text = f"{match.group(1)} gives {match.group(2)}"
        error = _check_step(line_number, text, match.group(1), match.group(2))
        if error:
            errors.append(error)
    return errors


def _check_step(line_number: int, text: str, expression: str, stated_text: str) -> StepError | None:
    """The StepError of `expression` stated to give `stated_text`; None when right or unreadable."""
    tokens = _expression_tokens(expression)
    stated_tokens = _expression_tokens(stated_text.strip().rstrip("."))
    if tokens is None or len(stated_tokens) != 1 or stated_tokens[0].kind != "number":
        return None
    computed = _evaluate_readings(tokens)
    stated = _number_value(stated_tokens[0].text, percent_as_fraction=False)
    if _divides_by_zero(computed):
        return StepError(line_number, text.strip(), stated, math.nan)
    if not computed or _matches(stated_tokens[0].text, computed):
        return None
    return StepError(line_number, text.strip(), stated, computed[0])


def _equation_errors(line_number: int, line: str) -> list[StepError]:
    """Every `expression = value` on a line: left, the arithmetic (with an operator or a fraction) that
    ends at the "="; right, the arithmetic that starts after it. In a running chain "5 + 3 = 8 - 2 = 6"
    the right side's first number alone may be the stated value."""
    segments = line.split("=")
    if len(segments) < 2:
        return []
    tokens = [_tokenize(segment) for segment in segments]
    errors, offset = [], 0
    for index in range(len(segments) - 1):
        offset += len(segments[index]) + 1
        left = _whole_run(segments[index], tokens[index], from_end=True)
        right = _whole_run(segments[index + 1], tokens[index + 1], from_end=False)
        if left is None or right is None or not any(t.kind in ("op", "fraction") for t in left.tokens):
            continue
        computed = _evaluate_readings(left.tokens)
        if right.neighbour is not None and right.neighbour.text.lower() in ("cent", "cents"):
            computed += [value * 100 for value in computed]  # "$1 / 2 = 50 cents"
        stated = [value for value in _evaluate_readings(right.tokens) if not math.isnan(value)]
        if not stated:
            continue
        if not _divides_by_zero(computed):
            if not computed or _right_side_agrees(right.tokens, computed):
                continue
        start = offset - 1 - len(segments[index]) + left.tokens[0].start
        end = offset + right.tokens[-1].end
        errors.append(StepError(line_number, line[start:end].strip(), stated[0], computed[0]))
    return errors


def _divides_by_zero(readings: list[float]) -> bool:
    """Every reading of the arithmetic divides by zero: no value makes such a step right."""
    return bool(readings) and all(math.isnan(value) for value in readings)


def _right_side_agrees(right: list[_Token], computed: list[float]) -> bool:
    if right[0].kind == "number" and _matches(right[0].text, computed):
        return True
    return any(numbers_equal(a, b) for a in _evaluate_readings(right) for b in computed)


def _matches(stated_text: str, computed: list[float]) -> bool:
    """Whether a stated number agrees with any reading of the computation: equal within the task
    tolerance, or equal to it rounded to the decimals written (GSM8K writes 33.33 for 100/3), or, for a
    whole number stated, its floor or ceiling (whole bags, whole people)."""
    decimals = len(stated_text.split(".")[1].rstrip("%")) if "." in stated_text else 0
    for stated in {_number_value(stated_text, True), _number_value(stated_text, False)}:
        for value in computed:
            allowed = {round(value, decimals)} | ({math.floor(value), math.ceil(value)} if decimals == 0 else set())
            if numbers_equal(stated, value) or any(math.isclose(stated, a, rel_tol=1e-9) for a in allowed):
                return True
    return False


# ---- a tiny arithmetic reader ------------------------------------------------------------------------
def _tokenize(text: str) -> list[_Token]:
    """Tokens of `text`, spaces dropped. A number glued to a letter or a colon ("5A", "2x", "6:48") or
    written with a leading zero ("0130") is algebra, a unit or a time, not arithmetic: "other"."""
    tokens = []
    for match in _TOKEN.finditer(text):
        kind, start, end = match.lastgroup, match.start(), match.end()
        if kind == "space":
            continue
        if kind == "word" or (kind in ("number", "fraction") and _glued(text, start, end)):
            kind = "other"
        tokens.append(_Token(kind, match.group(), start, end))
    return tokens


def _glued(text: str, start: int, end: int) -> bool:
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    digits = text[start:end].lstrip("$")
    return (before.isalpha() or before == ":" or after.isalpha() or after == ":"
            or (len(digits) > 1 and digits[0] == "0" and digits[1].isdigit()))


def _expression_tokens(text: str) -> list[_Token] | None:
    tokens = _tokenize(text)
    return tokens if tokens and _parse(tokens, True, True) is not None else None


@dataclass(frozen=True)
class _Side:
    """One side of an "=": the arithmetic next to it, and the token just beyond that (None: none)."""

    tokens: list[_Token]
    neighbour: _Token | None


def _whole_run(text: str, tokens: list[_Token], from_end: bool) -> _Side | None:
    """The arithmetic next to an "=" (`text` is what stands before it when from_end, else after it):
    every token back to (or up to) the nearest non-arithmetic token, when all of them read as one
    expression; None otherwise. Taking the whole run, never a part, keeps "60 students x 2/3" or
    "4(7) - 10" from being read as "2/3" or "(7) - 10"."""
    run: list[_Token] = []
    neighbour = None
    for token in (reversed(tokens) if from_end else tokens):
        if token.kind == "other":
            neighbour = token
            break
        run.append(token)
    if from_end:
        run.reverse()
    if not run or _parse(run, True, True) is None or _continues_unread(text, run, neighbour, from_end):
        return None
    return _Side(run, neighbour)


def _continues_unread(text: str, run: list[_Token], neighbour: _Token | None, from_end: bool) -> bool:
    """Whether the run is part of something the reader does not understand: a neighbour that is a
    number glued to letters or a colon ("Day 4:2(50+100)", "35(2/5)", "18 000"), a left side opening
    with an operator ("3*X - 3*6"), or one after a full stop or comma that follows a digit (".8 + . 84",
    "14, 400 / 80")."""
    if neighbour is None:
        return False
    if neighbour.text[0].isdigit():
        return True
    if not from_end:
        return False
    after_digit = neighbour.start > 0 and text[neighbour.start - 1].isdigit()
    return run[0].kind == "op" or neighbour.text == "." or (neighbour.text == "," and after_digit)


def _evaluate_readings(tokens: list[_Token]) -> list[float]:
    """The values an expression may mean, the first the likeliest: "20%" read as 0.2 and as 20 (people
    write "100 - 20% = 80%"), an unspaced "1/5" as one number and as a plain division ("28 / 1/5" is
    140, a calculator's "500/1/10" is 50); [] when it cannot be computed. A reading that divides by
    zero is NaN, kept only when every reading does (see _divides_by_zero)."""
    values = []
    has_fraction = any(token.kind == "fraction" for token in tokens)
    has_percent = any(token.text.endswith("%") for token in tokens)
    for fractions_bind in (True, False) if has_fraction else (True,):
        for percent_as_fraction in (True, False) if has_percent else (True,):
            value = _parse(tokens, percent_as_fraction, fractions_bind)
            if value is not None and not any(value == v or (math.isnan(value) and math.isnan(v)) for v in values):
                values.append(value)
    finite = [value for value in values if not math.isnan(value)]
    return finite or values


def _number_value(text: str, percent_as_fraction: bool) -> float:
    value = float(text.replace("$", "").replace(",", "").rstrip("%"))
    return value / 100 if percent_as_fraction and text.endswith("%") else value


def _parse(tokens: list[_Token], percent_as_fraction: bool, fractions_bind: bool) -> float | None:
    """Evaluate + - * / with parentheses and unary minus by recursive descent; None when the tokens
    are not one whole expression or overflow, NaN when they divide by zero."""
    if not fractions_bind:
        tokens = _split_fractions(tokens)
    position = [0]
    divided_by_zero = [False]

    def peek() -> _Token | None:
        return tokens[position[0]] if position[0] < len(tokens) else None

    def factor() -> float:
        token = peek()
        if token is None:
            raise ValueError("missing operand")
        position[0] += 1
        if token.kind == "op" and _OPERATORS[token.text] == "-":
            return -factor()
        if token.kind == "number":
            return _number_value(token.text, percent_as_fraction)
        if token.kind == "fraction":
            numerator, denominator = token.text.split("/")
            if not int(denominator):
                divided_by_zero[0] = True
                return math.nan
            return int(numerator) / int(denominator)
        if token.kind == "open":
            value = expression()
            if peek() is None or peek().kind != "close":
                raise ValueError("unclosed parenthesis")
            position[0] += 1
            return value
        raise ValueError(f"unexpected {token.text!r}")

    def binary(operand, operators: str) -> float:
        value = operand()
        while peek() is not None and peek().kind == "op" and _OPERATORS[peek().text] in operators:
            operator = _OPERATORS[tokens[position[0]].text]
            position[0] += 1
            right = operand()
            if operator == "/" and right == 0:
                divided_by_zero[0] = True
            value = {"+": value + right, "-": value - right, "*": value * right,
                     "/": value / right if right else math.nan}[operator]
        return value

    def term() -> float:
        return binary(factor, "*/")

    def expression() -> float:
        return binary(term, "+-")

    try:
        value = expression()
    except (ValueError, OverflowError):
        return None
    if position[0] != len(tokens):
        return None
    if divided_by_zero[0]:
        return math.nan
    return value if math.isfinite(value) else None


def _split_fractions(tokens: list[_Token]) -> list[_Token]:
    """The tokens with each fraction "a/b" written out as a, /, b."""
    split = []
    for token in tokens:
        if token.kind != "fraction":
            split.append(token)
            continue
        numerator, denominator = token.text.split("/")
        middle = token.start + len(numerator)
        split += [_Token("number", numerator, token.start, middle), _Token("op", "/", middle, middle + 1),
                  _Token("number", denominator, middle + 1, token.end)]
    return split
