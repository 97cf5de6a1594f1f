"""Task and Example, the record shapes every loader accepts, and the registry behind get_task().

A Task owns everything about one dataset that must not drift apart: how rows load, the prompt, the
SFT target, how an answer is read from a completion, and when it is correct. Subclasses for the
datasets live one per file beside this one.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Iterator

from reftune.errors import ReftuneError
from reftune.hub import OFFLINE_WORDS, hub_reachable
from reftune.tasks.answers import (
    ANSWER_TRIGGER,
    answer_text,
    format_number,
    numbers_equal,
    parse_number,
)

from reftune.tasks.prompting import PLAIN, PromptFormat

STYLES = ("nl", "python")


@dataclass(frozen=True)
class Example:
    """One question with its gold answer.

    answer: a float for numeric tasks, an option letter ("a".."e") for MathQA.
    cot: the gold chain of thought in the task's style; "" when the source has none in that style.
    options: MathQA only, (letter, text) pairs in order.
    """

    id: str
    question: str
    answer: float | str
    cot: str = ""
    options: tuple[tuple[str, str], ...] = ()


@dataclass
class Record:
    """What a record shape reads out of one row, before the task normalises it."""

    id: str
    question: str
    answer: object
    cots: dict[str, str] = field(default_factory=dict)  # style -> CoT
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RecordShape:
    name: str
    keys: frozenset[str]
    read: Callable[[dict, int], Record]  # (row, index) -> Record


RECORD_SHAPES: list[RecordShape] = []


def record_shape(name: str, *keys: str):
    """Register a reader for rows that have all of `keys` (checked in registration order)."""

    def register(read: Callable[[dict, int], Record]) -> Callable[[dict, int], Record]:
        RECORD_SHAPES.append(RecordShape(name, frozenset(keys), read))
        return read

    return register


def cot_style(cot: str) -> str:
    return "python" if "def solution" in cot else "nl"


@record_shape("ReFT JSON {item_id, question, answer_cot?, answer_value}", "question", "answer_value")
def read_reft_record(row: dict, index: int) -> Record:
    cot = row.get("answer_cot") or ""
    return Record(
        id=str(row.get("item_id", row.get("id", index))),
        question=row["question"],
        answer=row["answer_value"],
        cots={cot_style(cot): cot} if cot else {},
    )


class Task:
    """A dataset in one CoT style. Subclasses set `name` and, when there is one, `hub_dataset`."""

    name: ClassVar[str]
    hub_dataset: ClassVar[tuple[str, str | None] | None] = None  # (HF dataset id, config)
    partial_reward: ClassVar[bool] = True  # 0.1 for a parsed but wrong answer (numeric tasks)

    def __init__(self, style: str = "nl", **options):
        if options:
            raise ReftuneError(f"task {self.name!r} takes no options, got {sorted(options)}")
        if style not in STYLES:
            raise ReftuneError(f"unknown style {style!r} for task {self.name!r}: use one of {STYLES}")
        self.style = style

    def __repr__(self) -> str:
        return f"{type(self).__name__}(style={self.style!r})"

    # ---- loading -------------------------------------------------------------------------------
    def load(self, split: str = "train", path: str | os.PathLike | None = None) -> list[Example]:
        """Examples of `split` from `path` (a JSON / JSONL file or a folder holding `split`.json[l])
        or, when path is None, from the Hugging Face hub."""
        if path is None or _looks_like_hub_id(path):
            rows = self._rows_from_hub(split, None if path is None else str(path))
        else:
            rows = read_rows(resolve_data_file(path, split))
        examples = [self.example_from_row(row, index, where) for index, (row, where) in enumerate(rows)]
        if not examples:
            raise ReftuneError(f"no examples in {path or self.hub_dataset}: the file is empty")
        return examples

    def example_from_row(self, row: dict, index: int, where: str) -> Example:
        record = read_record(row, index, where)
        answer = self.normalize_gold(record.answer)
        if answer is None:
            raise ReftuneError(f"{where}: answer {record.answer!r} is not a valid answer for "
                               f"{self.name}; fix the row or drop it")
        return Example(record.id, record.question.strip(), answer,
                       record.cots.get(self.style, ""), record.options)

    def _rows_from_hub(self, split: str, dataset_id: str | None) -> Iterator[tuple[dict, str]]:
        if dataset_id is None and self.hub_dataset is None:
            raise ReftuneError(f"task {self.name!r} has no hub dataset: pass a data file")
        name, config = (dataset_id, None) if dataset_id else self.hub_dataset
        if not hub_reachable() and os.environ.get("HF_DATASETS_OFFLINE", "").lower() not in OFFLINE_WORDS:
            raise ReftuneError(f"could not load {name!r} split {split!r}: the Hugging Face hub is unreachable from "
                               f"here. Pass a local file instead, in one of the formats {describe_shapes()} "
                               f"(for example ../shared/data/gsm8k/train.jsonl)")
        try:
            import datasets

            rows = datasets.load_dataset(name, config, split=split)
        except Exception as exc:  # offline, unknown split, unknown name: all the user's to fix
            raise ReftuneError(
                f"could not load {name!r} split {split!r} from the Hugging Face hub "
                f"({type(exc).__name__}: {str(exc)[:200]}). Offline? Pass a local file instead, in one "
                f"of the formats {describe_shapes()} (for example ../shared/data/gsm8k/train.jsonl)"
            ) from None
        for index, row in enumerate(rows):
            yield row, f"row {index} of {name} ({split})"

    # ---- formatting ----------------------------------------------------------------------------
    # How prompts are laid out (plain, or the model's chat template): a stage sets it once it has the
    # model's tokenizer (reftune.training.data.use_prompt_format); the SFT target is the same in both.
    prompt_format: PromptFormat = PLAIN

    def prompt(self, example: Example) -> str:
        return self.prompt_format.prompt(example.question, self.style)

    def program_prefix(self, example: Example) -> str:
        """The first lines of a P-CoT program, which RL and sampling may append to the prompt."""
        return f'def solution():\n    """{example.question}"""\n'

    def target(self, example: Example) -> str:
        """The SFT target (without EOS): CoT + trigger + answer for nl, the program for python."""
        if not example.cot:
            raise ReftuneError(
                f"example {example.id} has no {self.style!r} chain of thought to train on: the source "
                f"holds none in that style (P-CoT needs programs, e.g. svamp_python_sdp.json)")
        if self.style == "python":
            return example.cot.strip()
        return f"{example.cot.strip()}\n{ANSWER_TRIGGER} {self.format_answer(example.answer)}"

    def format_answer(self, answer) -> str:
        return format_number(answer)

    # ---- answers -------------------------------------------------------------------------------
    def extract_answers(self, completions: list[str]) -> list:
        """One answer per completion, None where none can be read. For the python style each
        completion is a whole program, run in the sandbox."""
        if self.style == "python":
            from reftune.execution import run_programs

            return [self.answer_from_value(result.value) if result.ok else None
                    for result in run_programs(list(completions))]
        return [self.answer_from_text(answer_text(completion)) for completion in completions]

    def answer_from_text(self, text: str | None):
        return parse_number(text)

    def answer_from_value(self, value):
        if isinstance(value, bool) or value is None:
            return None
        if isinstance(value, (int, float)):
            return float(value) if abs(value) != float("inf") and value == value else None
        return parse_number(str(value))

    def normalize_gold(self, gold):
        """The gold as compared: data files hold strings ("72", "1,234", "203.0") or numbers."""
        if isinstance(gold, bool):
            return None
        if isinstance(gold, (int, float)):
            return float(gold)
        return parse_number(str(gold))

    def is_correct(self, pred, gold) -> bool:
        return numbers_equal(pred, self.normalize_gold(gold))


# ---- reading files ---------------------------------------------------------------------------
def describe_shapes() -> str:
    return "; ".join(shape.name for shape in RECORD_SHAPES)


def read_record(row: dict, index: int, where: str) -> Record:
    if not isinstance(row, dict):
        raise ReftuneError(f"{where} is a {type(row).__name__}, not a JSON object: "
                           f"every record must be an object in one of the formats {describe_shapes()}")
    for shape in RECORD_SHAPES:
        if shape.keys <= row.keys():
            try:
                record = shape.read(row, index)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ReftuneError(f"{where} looks like {shape.name} but could not be read "
                                   f"({type(exc).__name__}: {exc}); fix the record") from None
            _check_record(record, where)
            return record
    raise ReftuneError(f"{where} has keys {sorted(row)}, which match no known format; expected "
                       f"{describe_shapes()}. A record needs a question and an answer")


def _check_record(record: Record, where: str) -> None:
    if not isinstance(record.question, str) or not record.question.strip():
        raise ReftuneError(f"{where} has an empty or missing question; fix or drop the record")
    if record.answer is None or (isinstance(record.answer, str) and not record.answer.strip()):
        raise ReftuneError(f"{where} has an empty or missing answer; fix or drop the record")


def _looks_like_hub_id(path) -> bool:
    text = str(path)
    return (not Path(text).exists() and text.count("/") == 1 and not text.startswith((".", "/", "~"))
            and not text.endswith((".json", ".jsonl")))


def resolve_data_file(path: str | os.PathLike, split: str) -> Path:
    """`path` itself, or the file for `split` inside a folder (train.jsonl, test.json, ...)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ReftuneError(f"data file {path} does not exist: check the path (a .json or .jsonl "
                           f"file, or a folder holding {split}.jsonl / {split}.json)")
    if path.is_file():
        return path
    if not path.is_dir():  # a device, a pipe or a socket: reading it could block or never end
        raise ReftuneError(f"data {path} is neither a file nor a folder: give a .json or .jsonl file, or a "
                           f"folder holding {split}.jsonl / {split}.json")
    candidates = [path / f"{split}.jsonl", path / f"{split}.json"]
    found = [candidate for candidate in candidates if candidate.is_file()]
    if not found:
        found = sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl") and split in p.stem)
    if len(found) != 1:
        listing = ", ".join(sorted(p.name for p in path.iterdir())) or "nothing"
        raise ReftuneError(f"cannot tell which file in folder {path} holds split {split!r} (it has: "
                           f"{listing}); name the file itself, or call it {split}.jsonl")
    return found[0]


def json_rows(text: str, label: str) -> Iterator[tuple[object, str, str | None]]:
    """(row, where, None) for each record of a JSON array, or each line of JSON Lines text, and
    (None, where, what is wrong) for each part that is not valid JSON. where: "line N of LABEL" /
    "record N of LABEL" (LABEL alone when a whole array does not parse)."""
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            yield None, label, f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            return
        yield from ((row, f"record {index} of {label}", None) for index, row in enumerate(rows))
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                yield json.loads(line), f"line {number} of {label}", None
            except json.JSONDecodeError as exc:
                # json's own messages may end in "at" ("Unterminated string starting at")
                message = exc.msg.removesuffix(" at")
                yield None, f"line {number} of {label}", f"not valid JSON ({message} at column {exc.colno})"


def read_rows(path: Path) -> Iterator[tuple[dict, str]]:
    """(row, "line N of FILE" / "record N of FILE") for a JSON array or JSON Lines file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReftuneError(f"cannot read data file {path}: {exc}") from None
    return _checked_rows(json_rows(text, str(path)))


def _checked_rows(rows: Iterator[tuple[object, str, str | None]]) -> Iterator[tuple[dict, str]]:
    for row, where, error in rows:
        if error and where.startswith("line"):
            raise ReftuneError(f"{where} is {error}; a .jsonl file holds one JSON object per line, a .json "
                               f"file one array of objects")
        if error:
            raise ReftuneError(f"{where} is {error}; fix the file or convert it to JSON Lines")
        yield row, where


# ---- the registry ----------------------------------------------------------------------------
TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    TASKS[cls.name] = cls
    return cls


def get_task(name: str, style: str = "nl", **options) -> Task:
    """The task `name` in CoT `style` ("nl" or "python"); `options` go to the task (arithmetic's
    generator knobs, for instance)."""
    if name not in TASKS:
        raise ReftuneError(f"unknown task {name!r}: use one of {sorted(TASKS)}")
    return TASKS[name](style=style, **options)
