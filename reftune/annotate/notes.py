"""GSM8K calculator notes -> a P-CoT program in the authors' shape (see svamp_python_sdp.json).

Each note `<<48/2=24>>` becomes one assignment; a number in a later note that equals an earlier
result (and is not a number of the question) becomes that result's variable, so the program is a
chain, not a list of constants. Variables are named from the rationale's words around the note.

>>> print(notes_to_program("How many clips?", "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\\n"
...                        "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.", 72).program)
def solution():
    \"\"\"How many clips?\"\"\"
    clips_in_may = 48 / 2
    clips_altogether_in_april = 48 + clips_in_may
    result = clips_altogether_in_april
    return result
"""
from __future__ import annotations

import ast
import builtins
import keyword
import math
import re
from dataclasses import dataclass

from reftune.tasks.answers import numbers_equal

NOTE = re.compile(r"<<([^<>=]*)=([^<>]*)>>")
# A statement the rationale forgot to annotate: "so 20/4 = $5", "$40 − $4 = $36".
_PLAIN_STATEMENT = re.compile(r"((?:\$?\d[\d,]*(?:\.\d+)?\s*[-+*/x×−–]\s*)+\$?\d[\d,]*(?:\.\d+)?)\s*=\s*\$?\d")
_PLAIN_OPERATORS = str.maketrans({"x": "*", "×": "*", "−": "-", "–": "-", "$": None})
_WORD = re.compile(r"[A-Za-z]+")
_LEADING_ZEROS = re.compile(r"(?<![\d.])0+(?=\d)")
# Words that end the phrase naming a result ("8 more purple flowers than yellow ones").
_BREAKERS = frozenset("than because since so and but which that if when while for to from with by as "
                      "who where then or".split())
# Words that never start or end a name; "a", "every", ... between two words read "per".
_STOPWORDS = frozenset("a an the of in on at is are was were be been has have had he she it they we you i "
                       "his her its their our your my this these those there here now also just only total "
                       "each every per all more less much many some any not".split())
_PER = frozenset({"a", "an", "every", "each", "per"})
_RESERVED = frozenset({"result", "solution"}) | frozenset(dir(builtins))
MAX_NAME_WORDS = 4


@dataclass(frozen=True)
class Step:
    """One assignment of the program."""

    name: str  # the variable, e.g. "clips_in_may"
    expression: str  # Python source; earlier results appear as their names
    value: float  # what the expression gives


@dataclass(frozen=True)
class Conversion:
    """What converting one rationale gave: a program, or why there is none."""

    program: str  # the whole `def solution(): ...`; "" when none could be made
    problem: str  # "" when a program was made, else one line saying why not
    steps: tuple[Step, ...] = ()


def notes_to_program(question: str, rationale: str, gold: float) -> Conversion:
    """The program of a GSM8K rationale: one step per readable note (a line without notes may give
    its plain `a op b = c` statements instead), `result` = the last step whose
    value is the gold (so a rationale that states the answer early and then rambles still converts).
    The program is not run here; the caller verifies it in the sandbox."""
    steps: list[Step] = []
    for line in rationale.splitlines():
        statements = list(NOTE.finditer(line)) or list(_PLAIN_STATEMENT.finditer(line))
        for match in statements:
            expression = match.group(1).translate(_PLAIN_OPERATORS)
            step = _note_step(expression, steps, _phrase_name(line, match))
            if step is not None:
                steps.append(step)
    if not steps:
        return Conversion("", "the rationale has no readable calculator notes")
    answering = [index for index, step in enumerate(steps) if numbers_equal(step.value, gold)]
    last = answering[-1] if answering else len(steps) - 1
    return Conversion(format_program(question, steps[: last + 1]), "", tuple(steps[: last + 1]))


def format_program(question: str, steps: list[Step]) -> str:
    docstring = question.replace("\\", "\\\\").replace('"""', '\\"\\"\\"').rstrip('"')
    lines = ["def solution():", f'    """{docstring}"""']
    lines += [f"    {step.name} = {step.expression}" for step in steps]
    lines += [f"    result = {steps[-1].name}", "    return result"]
    return "\n".join(lines)


# ---- one note -> one step ------------------------------------------------------------------------
def _note_step(expression: str, earlier: list[Step], phrase: str) -> Step | None:
    try:
        tree = ast.parse(_LEADING_ZEROS.sub("", expression.replace(",", "").strip()), mode="eval")
        value = _evaluate(tree.body)
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError):
        return None  # an unreadable note; a later note that uses its value writes it as a number
    tree = _NameEarlierResults(earlier).visit(tree)
    name = _unique_name(phrase, {step.name for step in earlier}, len(earlier) + 1)
    return Step(name, ast.unparse(tree.body), value)


_BINARY = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
           ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b}


def _evaluate(node: ast.AST) -> float:
    """Arithmetic only (numbers, + - * / // % **, unary minus); anything else is a ValueError."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        base, exponent = _evaluate(node.left), _evaluate(node.right)
        if abs(exponent) > 64:
            raise ValueError("exponent too large")
        return math.pow(base, exponent)
    raise ValueError(f"not arithmetic: {ast.dump(node)[:60]}")


class _NameEarlierResults(ast.NodeTransformer):
    """Replaces a number equal to an earlier result by that result's name (the latest such), even
    when the question also holds it: "2 x 8 = 16 ... 32 + 16 = 48" adds the result, not the given 16."""

    def __init__(self, earlier: list[Step]):
        self.earlier = earlier

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        value = node.value
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return node
        for step in reversed(self.earlier):
            if math.isclose(step.value, value, rel_tol=1e-9, abs_tol=1e-9):
                return ast.Name(step.name, ast.Load())
        return node


# ---- names from words ------------------------------------------------------------------------------
def _phrase_name(line: str, note: re.Match) -> str:
    """Words naming the note's result: those after it ("24 clips in May") or, when none, the last
    words before the arithmetic it repeats ("he earned 0.2 x 50 = $<<...>>")."""
    before = re.sub(r"[\d\s+\-*/x×=$.,()%]*$", "", re.sub(r"'s\b", "", line[: note.start()]))
    after = re.sub(r"^\s*\$?[\d,.]*\s*%?", "", re.sub(r"'s\b", "", line[note.end():]))
    words = _phrase_words(after, from_start=True)
    if not words:
        words = _phrase_words(before, from_start=False)
    elif words[0] == "per" or len(words) == 1:
        # A lone unit says little ("46 legs"): the word before the arithmetic says whose ("kangaroos
        # have 23*2 = 46 legs" -> kangaroos_legs), as it says what is per minute in "earns 12/60 per minute".
        words = [word for word in _phrase_words(before, from_start=False)[-1:] if word != words[-1]] + words
    return "_".join(words)


def _phrase_words(text: str, from_start: bool) -> list[str]:
    clause = re.split(r"[.,;:!?()\n]", text)[0 if from_start else -1]
    words = [word.lower() for word in _WORD.findall(clause) if len(word) > 1 or word in "aI"]
    if from_start:
        cut = next((i for i, word in enumerate(words) if word in _BREAKERS and i > 0), len(words))
        words = words[:cut]
        while words and (words[0] in _STOPWORDS - {"per", "every", "each"} or words[0] in _BREAKERS):
            words = words[1:]
    else:
        words = [word for word in words if word not in _STOPWORDS and word not in _BREAKERS]
        words = words[-3:]
    while words and words[-1] in _STOPWORDS:
        words.pop()
    words = ["per" if word in _PER else word for word in words[:MAX_NAME_WORDS]]
    while words and words[-1] in _STOPWORDS:
        words.pop()
    return words


def _unique_name(phrase: str, taken: set[str], position: int) -> str:
    name = phrase or f"step_{position}"
    if keyword.iskeyword(name) or name in _RESERVED:
        name = f"{name}_value"
    unique, count = name, 2
    while unique in taken:
        unique, count = f"{name}_{count}", count + 1
    return unique
