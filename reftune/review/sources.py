"""The inputs `reftune review` was given: which files each PATH stands for, what kind they are, and
the task and style that read their answers. Reading the rows is `records`' job.

>>> task_from_id("gsm8k_12"), task_from_id("mathqa-numeric_3"), task_from_id("q7")
('gsm8k', 'mathqa-numeric', None)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from reftune.config import parse_task_options
from reftune.errors import ReftuneError
from reftune.tasks import STYLES, TASKS

KINDS = ("samples", "rollouts", "reft", "annotate")
ROLLOUTS_FILE = "rollouts.jsonl"
ANNOTATED_FILE, REJECTS_FILE, ANNOTATE_SUMMARY = "annotated.json", "rejects.jsonl", "annotate.json"
JOURNAL_SUFFIX = ".review.jsonl"
WHAT_IT_READS = ("a samples file (<split>-samples.jsonl or samples.jsonl), an RL run's rollouts.jsonl, "
                 "a ReFT-format .json/.jsonl training file, or an annotate output folder")
MAX_SHOWN = 8  # paths one message lists
# id prefixes the ReFT files use, longest first so that mathqa-numeric_ is not read as mathqa_
ID_PREFIXES = (("mathqa-numeric_", "mathqa-numeric"), ("mathqa_", "mathqa"), ("gsm8k_", "gsm8k"),
               ("svamp_", "svamp"), ("arithmetic_", "arithmetic"))


@dataclass(frozen=True)
class InputFile:
    """One data file to review, before its task is known."""

    kind: str                       # one of KINDS
    path: Path                      # the data file; the journal and exports sit beside it
    extra: tuple[Path, ...] = ()    # read with it: an annotate folder's rejects.jsonl


@dataclass(frozen=True)
class TaskChoice:
    """The task that extracts and checks this input's answers, and where that choice came from."""

    task: str
    style: str
    options: dict = field(default_factory=dict, hash=False)  # the run's task_options
    origin: str = ""                 # "--task", "config.yaml", "id prefix": shown on the page


@dataclass(frozen=True)
class Source:
    """One input file as the app shows it; URLs name it by `number`, never by path."""

    number: int
    input: InputFile
    choice: TaskChoice
    label: str                       # the file name, with its folder: what the page calls it

    @property
    def kind(self) -> str:
        return self.input.kind

    @property
    def path(self) -> Path:
        return self.input.path

    @property
    def journal_path(self) -> Path:
        return self.path.with_name(self.path.name + JOURNAL_SUFFIX)


def find_inputs(path: str | Path) -> list[InputFile]:
    """The data files one PATH on the command line stands for."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ReftuneError(f"{path} does not exist: give {WHAT_IT_READS}")
    if path.is_dir():
        return folder_inputs(path)
    if not path.is_file():  # a device such as /dev/zero, or a pipe: reading it could never end
        raise ReftuneError(f"{path} is neither a file nor a folder: give {WHAT_IT_READS}")
    if path.name.endswith(JOURNAL_SUFFIX):
        raise ReftuneError(f"{path} is a review journal: give the data file beside it instead")
    return [InputFile(file_kind(path), path)]


def folder_inputs(folder: Path) -> list[InputFile]:
    if (folder / ANNOTATED_FILE).is_file() or (folder / REJECTS_FILE).is_file():
        return [InputFile("annotate", folder / ANNOTATED_FILE, (folder / REJECTS_FILE,))]
    files = [folder / ROLLOUTS_FILE] if (folder / ROLLOUTS_FILE).is_file() else []
    files += sorted(p for p in folder.glob("*samples.jsonl") if p.is_file())
    if not files:
        below = inputs_below(folder)
        if below:
            shown = " ".join(str(p) for p in below[:MAX_SHOWN]) + (" ..." if len(below) > MAX_SHOWN else "")
            raise ReftuneError(f"folder {folder} holds nothing to review itself; the folders below it hold "
                               f"{len(below)} input{'s' if len(below) > 1 else ''}: give them instead, e.g. "
                               f"reftune review {shown}")
        raise ReftuneError(f"folder {folder} holds nothing to review: give {WHAT_IT_READS}")
    return [InputFile(file_kind(p), p) for p in files]


def inputs_below(folder: Path, depth: int = 3) -> list[Path]:
    """The samples and rollouts files, and annotate folders, up to `depth` folders below `folder`
    (a demo's folder holds its runs' files one or two down; a deeper search of a home folder would
    take long for nothing)."""
    found = []
    for level in range(1, depth + 1):
        below = "*/" * level
        found += [p for name in ("*samples.jsonl", ROLLOUTS_FILE) for p in folder.glob(below + name) if p.is_file()]
        found += [p.parent for p in folder.glob(below + ANNOTATED_FILE) if p.is_file()]
    return sorted(set(found))


def file_kind(path: Path) -> str:
    """samples / rollouts / reft, from the file's name and its first readable row."""
    if path.name == ROLLOUTS_FILE:
        return "rollouts"
    first = first_row(path)
    if first is None or "samples" not in first:
        return "reft"
    return "rollouts" if "step" in first else "samples"


def first_row(path: Path) -> dict | None:
    """The first JSON object of a JSONL file; None for a JSON array or a file without one."""
    try:
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                if line.strip().startswith("["):
                    return None
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict):
                    return row
    except (OSError, UnicodeDecodeError) as exc:
        raise ReftuneError(f"cannot read {path}: {exc}") from None
    return None


def task_from_id(record_id: str) -> str | None:
    return next((task for prefix, task in ID_PREFIXES if str(record_id).startswith(prefix)), None)


def run_config(path: Path) -> tuple[dict, Path | None]:
    """The settings of the command that wrote `path`, and the file they come from: the run's
    config.yaml (in its folder or the folder above), else an annotate folder's annotate.json."""
    candidates = [path.parent / "config.yaml", path.parent.parent / "config.yaml", path.parent / ANNOTATE_SUMMARY]
    for candidate in candidates:
        if candidate.is_file():
            try:
                text = candidate.read_text(encoding="utf-8")
                loaded = json.loads(text) if candidate.suffix == ".json" else yaml.safe_load(text)
            except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
                raise ReftuneError(f"cannot read {candidate} ({exc}): fix it or pass --task and --style") from None
            return (loaded if isinstance(loaded, dict) else {}), candidate
    return {}, None


def task_options(config: dict, origin: str) -> dict:
    """A run's task_options: config.yaml writes them as "key=value,key=value" (a mapping is taken too)."""
    options = config.get("task_options") or {}
    if isinstance(options, dict):
        return dict(options)
    try:
        return parse_task_options(str(options))
    except ReftuneError as exc:
        raise ReftuneError(f"{origin}: {exc}; fix it or pass --task and --style") from None


def choose_task(path: Path, ids: list[str], texts: list[str], task: str | None,
                style: str | None) -> TaskChoice:
    """--task/--style, else the run's config.yaml (or annotate.json), else the id prefix (and "def
    solution" in the texts for the style), else one clear error."""
    config, written_in = run_config(path)
    if task:
        name, options, origin = task, {}, "--task"
    elif config.get("task"):
        name, options, origin = str(config["task"]), task_options(config, written_in), written_in.name
    else:
        name = next((found for found in map(task_from_id, ids) if found), None)
        options, origin = {}, "id prefix"
    if name is None:
        raise ReftuneError(f"cannot tell the task of {path} (no config.yaml or annotate.json beside it, ids "
                           f"without a gsm8k_/svamp_/mathqa_ prefix): pass --task, one of {sorted(TASKS)}")
    if name not in TASKS:
        raise ReftuneError(f"unknown task {name!r} for {path} (from {origin}): use one of {sorted(TASKS)}")
    chosen_style = style or config.get("style") or guess_style(texts)
    if chosen_style not in STYLES:
        raise ReftuneError(f"unknown style {chosen_style!r} for {path}: use one of {STYLES}")
    return TaskChoice(name, chosen_style, options, origin)


def guess_style(texts: list[str]) -> str:
    return "python" if any("def solution" in text for text in texts[:200]) else "nl"


def label_for(path: Path) -> str:
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name
