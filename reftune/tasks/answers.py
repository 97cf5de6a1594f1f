"""Reading final answers out of text: the trigger, numbers, option letters. Pure functions.

>>> answer_text("Step 1 ... Therefore, the answer is: $1,234.50.")
'$1,234.50.'
>>> parse_number("$1,234.50.")
1234.5
>>> parse_choice("(B) 27.675")
'b'
"""
from __future__ import annotations

import re

ANSWER_TRIGGER = "Therefore, the answer is:"
NUMBER_TOLERANCE = 1e-2  # |pred - gold| <= 1e-2 counts as equal (authors' scripts)
CHOICE_LETTERS = "abcde"

# "the answer is", with or without the colon: our targets write "Therefore, the answer is: 72",
# SVAMP's gold rationales end in "the answer is <72>", and models drift between the two.
_TRIGGER = re.compile(r"the answer is\s*:?", re.IGNORECASE)

_NUMBER = re.compile(
    r"""(?P<sign>[-−])?\s*
        (?P<currency>[$€£¥])?\s*
        (?P<sign_after_currency>-)?
        (?P<integer>\d{1,3}(?:,\d{3})+|\d+)?
        (?P<fraction>\.\d+)?
        (?:\s*/\s*(?P<denominator>\d+(?:\.\d+)?))?
        \s*(?P<percent>%)?""",
    re.VERBOSE,
)
_CHOICE = re.compile(r"^[\s*(\[]*(?:option\s+)?\(?\s*([a-e])\s*(?:\)|\]|\*|\.|,|:|;|\s|$)", re.IGNORECASE)


def answer_text(completion: str) -> str | None:
    """The text after the last answer trigger, stripped; None when there is no trigger."""
    matches = list(_TRIGGER.finditer(completion))
    if not matches:
        return None
    return completion[matches[-1].end():].strip()


def parse_number(text: str | None) -> float | None:
    """The first number in `text`, or None.

    Accepts thousands separators (1,234), a currency sign ($5, -$5, $-5), decimals (.5, 2.25), a
    trailing full stop, negatives, simple fractions (3/4) and percentages (25% -> 25.0: GSM8K's
    golds write percentages as plain numbers). Markdown emphasis and angle brackets are ignored.
    """
    if text is None:
        return None
    text = text.strip().lstrip("*<>[( ")
    for match in _NUMBER.finditer(text):
        if match.group("integer") is None and match.group("fraction") is None:
            continue
        digits = (match.group("integer") or "0").replace(",", "") + (match.group("fraction") or "")
        value = float(digits)
        if match.group("denominator") is not None:
            denominator = float(match.group("denominator"))
            if denominator == 0:
                return None
            value /= denominator
        negative = match.group("sign") or match.group("sign_after_currency")
        return -value if negative else value
    return None


def parse_choice(text: str | None, letters: str = CHOICE_LETTERS) -> str | None:
    """The option letter `text` starts with, lower-cased: b, B, (b), b ), [b], option b; else None."""
    if text is None:
        return None
    match = _CHOICE.match(text)
    if not match:
        return None
    letter = match.group(1).lower()
    return letter if letter in letters else None


def numbers_equal(pred: float | None, gold: float | None, tolerance: float = NUMBER_TOLERANCE) -> bool:
    return pred is not None and gold is not None and abs(pred - gold) <= tolerance


def format_number(value: float) -> str:
    """A gold number as a target writes it: 72.0 -> '72', 0.5 -> '0.5', 1/3 -> '0.333333'."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")
