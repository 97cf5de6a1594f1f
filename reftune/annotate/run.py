"""`reftune annotate`: make verified chains of thought for a file of (question, answer) records.

    1. load the task and the questions (the data file is only read)
    2. open the output folder: replay its journal; refuse another run's; journal this start
    3. make CoTs from the source (notes, an endpoint, a local model); verify each; journal each verdict
    4. write annotated.json, rejects.jsonl and annotate.json from the journal (atomically)
A first Ctrl-C stops sending requests, keeps what arrived, writes the files and says how to continue.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

from reftune import __version__
from reftune.annotate.client import check_endpoint
from reftune.annotate.journal import JOURNAL_NAME, RUN_IDENTITY, Journal, check_same_run, replay
from reftune.annotate.outputs import (ANNOTATED_NAME, REJECTS_NAME, RUN_RECORD, SUMMARY_NAME, write_atomically,
                                      write_outputs)
from reftune.annotate.prompts import STOP, read_few_shot
from reftune.annotate.sources import (ModelPrompts, Question, Recorder, annotate_from_endpoint,
                                      annotate_from_local, annotate_from_notes, question_finished)
from reftune.errors import ReftuneError
from reftune.tasks import get_task
from reftune.tasks.base import read_rows, resolve_data_file

OWN_FILES = {JOURNAL_NAME, ANNOTATED_NAME, REJECTS_NAME, SUMMARY_NAME, RUN_RECORD}
NO_PROGRAM_FORM = {"mathqa": "its answers are option letters; use --style nl, or --task mathqa-numeric for programs"}


def annotate(config) -> dict:
    # 1. the task and the questions (all of the file's: a narrower re-run keeps what was made before)
    task = get_task(config.task, style=config.style)
    if config.style == "python" and config.task in NO_PROGRAM_FORM:
        raise ReftuneError(f"task {config.task} has no program form (--style python): {NO_PROGRAM_FORM[config.task]}")
    if config.endpoint:
        check_endpoint(config.endpoint)
    folder = Path(config.output)
    check_output_folder(folder)
    every_question = load_questions(task, config)
    questions = every_question[: config.limit]
    check_notes(config, questions)

    # 2. the output folder: its journal replayed, then the source opened (both fail before any write)
    state = replay(folder / JOURNAL_NAME)
    run = run_identity(config)
    check_same_run(state, run, folder)
    samples = 1 if config.source == "notes" else config.num_samples
    left = [q for q in questions if not question_finished(state, q.example.id, samples, config.keep_per_question)]
    make_cots = open_source(config, task, questions, read_api_key(config.api_key_env), nothing_left=not left)
    journal = Journal(folder / JOURNAL_NAME)
    write_run_record(folder)
    journal.append({"event": "start", "run": run, "options": public_options(config)}, state)

    # 3. make and verify CoTs
    started, interrupted = time.monotonic(), False
    bar = progress_bar(config, questions, state)
    recorder = Recorder(task, journal, state, config.keep_per_question, on_verdict=bar.refresh_coverage)
    try:
        make_cots(recorder)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        seconds = time.monotonic() - started
        journal.append({"event": "finish", "seconds": round(seconds, 3), "interrupted": interrupted}, state)
        journal.close()
        bar.close()

    # 4. the files, from the journal's state: this run's questions and every one an earlier run did
    done = [q.example for q in every_question[len(questions):] if q.example.id in state.verdicts]
    summary = write_outputs(folder, config, task, [q.example for q in questions] + done, state, seconds=0.0)
    summary["interrupted"] = interrupted
    if interrupted:
        print(f"annotate: interrupted; what arrived is kept in {folder / JOURNAL_NAME}. Run the same command "
              f"again to continue.")
    return summary


def open_source(config, task, questions: list[Question], api_key: str | None, nothing_left: bool):
    """The function that makes and records the CoTs, once the source is known to work: the endpoint
    answered with its model list, or the local model loaded (not when no question is left to do)."""
    if config.source == "notes" or (nothing_left and not config.endpoint):
        return lambda recorder: annotate_from_notes(task, questions, recorder)
    few_shot = read_few_shot(config.task, config.style, config.prompt_file)
    sampling = {"temperature": config.temperature, "top_p": config.top_p, "max_tokens": config.max_new_tokens,
                "stop": STOP}
    prompts = ModelPrompts(few_shot, config.chat, config.api_model or config.model, sampling)
    if config.endpoint:
        from reftune.annotate.client import OpenAIClient

        client = OpenAIClient(config.endpoint, config.api_model, api_key, config.request_timeout, config.retries,
                              config.backoff)
        client.check_model()
        return lambda recorder: annotate_from_endpoint(task, questions, recorder, client, prompts,
                                                       config.num_samples, config.concurrency)
    from reftune.annotate.local import LocalSampler  # torch and transformers: only for a local model

    texts = [completion_prompt_text(prompts, task, q) for q in questions[:200]]
    sampler = LocalSampler(config.model, tokenizer_texts=texts, seed=config.seed)
    return lambda recorder: annotate_from_local(task, questions, recorder, sampler, prompts, config.num_samples,
                                                config.batch_size)


def completion_prompt_text(prompts: ModelPrompts, task, question: Question) -> str:
    """What the in-memory tokenizer of `tiny` is fitted to: the prompts it will read."""
    prompt = prompts.prompt(task, question)
    return prompt if isinstance(prompt, str) else " ".join(m["content"] for m in prompt)


def check_notes(config, questions: list[Question]) -> None:
    """--source notes needs CoTs of the data's own to verify or convert: one line when it has none."""
    if config.source != "notes" or any(q.rationale or q.example.cot for q in questions):
        return
    if config.style == "python":
        raise ReftuneError(f"{config.data} holds neither programs nor calculator notes to convert into programs: "
                           f"use --source model, or --style nl")
    raise ReftuneError(f"{config.data} holds no CoTs (answer_cot, GSM8K rationales, SVAMP equations) for --source "
                       f"notes to verify: use --source model to sample them")


def check_output_folder(folder: Path) -> None:
    """Refuse, as the training stages do, a folder another command made or that holds other files:
    annotate takes a new folder or one of its own (review's files beside annotated.json are its own)."""
    if folder.exists() and not folder.is_dir():
        raise ReftuneError(f"--output {folder} is a file, not a folder: choose a folder path")
    if not folder.is_dir():
        return
    record = folder / RUN_RECORD
    try:
        made_by = json.loads(record.read_text()).get("stage") if record.is_file() else None
    except (OSError, ValueError, AttributeError):
        made_by = "?"
    others = sorted(p.name for p in folder.iterdir() if not own_file(p.name))
    if made_by not in (None, "annotate"):
        raise ReftuneError(f"--output {folder} holds a `reftune {made_by}` run: nothing is overwritten; choose a new "
                           f"--output")
    if others:
        raise ReftuneError(f"--output {folder} already holds other files ({', '.join(others[:4])}"
                           f"{', ...' if len(others) > 4 else ''}): nothing is overwritten; choose a new --output")


def own_file(name: str) -> bool:
    """annotate's files, the review app's beside annotated.json (annotated.json.review.jsonl,
    annotated.reviewed.json, ...), temporary names and other hidden files."""
    return name in OWN_FILES or name.startswith((".", "annotated."))


def write_run_record(folder: Path) -> None:
    """run.json names the command that made the folder, as the training stages write it."""
    if not (folder / RUN_RECORD).exists():
        write_atomically(folder / RUN_RECORD, json.dumps({"stage": "annotate", "reftune": __version__,
                                                          "started": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1))


def load_questions(task, config) -> list[Question]:
    """The task's examples of the file, each with its raw GSM8K rationale when it has one (the
    examples keep only the text without the calculator notes). Ids must be unique."""
    examples = task.load(config.split, config.data)
    path = resolve_data_file(config.data, config.split)
    rationales = [_rationale(row) for row, _ in read_rows(path)]
    seen: set[str] = set()
    for example in examples:
        if example.id in seen:
            raise ReftuneError(f"{path}: item id {example.id!r} repeats; ids must be unique to keep CoTs apart")
        seen.add(example.id)
    return [Question(example, rationale) for example, rationale in zip(examples, rationales)]


def _rationale(row) -> str:
    answer = row.get("answer") if isinstance(row, dict) else None
    return answer.rpartition("####")[0] if isinstance(answer, str) and "####" in answer else ""


def read_api_key(variable: str | None) -> str | None:
    """The key from the environment variable named by --api-key-env; it is never written anywhere."""
    if not variable:
        return None
    key = os.environ.get(variable)
    if not key:
        raise ReftuneError(f"the environment variable {variable} (named by --api-key-env) is not set: "
                           f"export {variable}=<your key>, or leave out --api-key-env for a server without keys")
    return key


def run_identity(config) -> dict:
    identity = {key: getattr(config, key) for key in RUN_IDENTITY}
    identity["data"] = str(Path(config.data).expanduser().resolve())
    return identity


def public_options(config) -> dict:
    """The options journaled with each start; the API key itself is never among them."""
    return asdict(config)


class _Progress:
    """A progress bar over questions showing the coverage so far (or nothing, without --progress)."""

    def __init__(self, config, questions: list[Question], state):
        self.state = state
        self.ids = [q.example.id for q in questions]
        self.bar = None
        self.last_refresh = 0.0
        if config.progress:
            from tqdm import tqdm

            self.bar = tqdm(total=len(self.ids), desc="annotate", unit="q", dynamic_ncols=True)
            self.refresh_coverage()

    def refresh_coverage(self) -> None:
        if self.bar is None or time.monotonic() - self.last_refresh < 0.25:  # counting is O(questions)
            return
        self.last_refresh = time.monotonic()
        covered = sum(1 for item_id in self.ids if self.state.kept(item_id))
        self.bar.n = sum(1 for item_id in self.ids if item_id in self.state.verdicts)
        self.bar.set_postfix_str(f"coverage {covered}/{len(self.ids)}", refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.last_refresh = 0.0
            self.refresh_coverage()
            self.bar.close()


def progress_bar(config, questions: list[Question], state) -> _Progress:
    return _Progress(config, questions, state)
