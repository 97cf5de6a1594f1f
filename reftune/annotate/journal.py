"""The append-only journal of an annotation run: every response and every verdict, one JSON event per
line, written as it happens. The run's state is the replay of the journal, so re-running the same
command continues where the last one stopped; the responses it holds are the cache that makes a
repeated request free.

Events (each with "time" and "event"):
  start      {"run": the options that identify the run}
  response   {"item_id", "sample_index", "cache_key", "text", "tokens_in", "tokens_out"}
  verified   {"item_id", "sample_index", "reason": "correct", "detail", "answer_cot", "kept"}
             kept: false for a duplicate or a CoT past --keep-per-question
  rejected   {"item_id", "sample_index", "reason" (a verdict status or "request_failed"), "detail",
              "answer_cot"}
  finish     {"seconds", "interrupted"}
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from reftune.errors import ReftuneError

JOURNAL_NAME = "journal.jsonl"
REQUEST_FAILED = "request_failed"
# Options that make a journal another run's when they differ (the rest may change on a resume).
RUN_IDENTITY = ("task", "style", "data", "split", "source", "endpoint", "api_model", "model", "chat")


@dataclass(frozen=True)
class Response:
    """A model response as the journal keeps it."""

    text: str  # the completion as received
    tokens_in: int  # prompt tokens billed (0 where unknown)
    tokens_out: int  # completion tokens billed


@dataclass
class AnnotationState:
    """What replaying a journal gives."""

    run: dict | None = None  # the first start event's run options
    responses: dict[str, Response] = field(default_factory=dict)  # cache_key -> response
    verdicts: dict[str, dict[int, dict]] = field(default_factory=dict)  # item_id -> sample -> last verdict event
    requests: int = 0  # responses received plus requests that failed for good
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0  # wall time of the finished invocations

    def sample_done(self, item_id: str, sample_index: int) -> bool:
        """A verdict that a new request could not change (a failed request is tried again)."""
        event = self.verdicts.get(item_id, {}).get(sample_index)
        return event is not None and event["reason"] != REQUEST_FAILED

    def kept(self, item_id: str) -> list[dict]:
        """The kept verified CoTs of a question, by sample index."""
        samples = self.verdicts.get(item_id, {})
        return [samples[index] for index in sorted(samples) if samples[index].get("kept")]

    def verdicts_of(self, item_ids) -> list[dict]:
        """The latest verdict of every sample of these questions, by question then sample index."""
        return [samples[index] for item_id in item_ids for samples in [self.verdicts.get(item_id, {})]
                for index in sorted(samples)]

    def record(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "start" and self.run is None:
            self.run = event.get("run")
        elif kind == "response":
            response = Response(event["text"], int(event.get("tokens_in", 0)), int(event.get("tokens_out", 0)))
            self.responses[event["cache_key"]] = response
            self.requests += 1
            self.tokens_in += response.tokens_in
            self.tokens_out += response.tokens_out
        elif kind in ("verified", "rejected"):
            self.verdicts.setdefault(event["item_id"], {})[int(event["sample_index"])] = event
            if event.get("reason") == REQUEST_FAILED:
                self.requests += 1
        elif kind == "finish":
            self.seconds += float(event.get("seconds", 0.0))


def replay(path: Path) -> AnnotationState:
    """The state a journal describes. A line cut short by a kill is skipped (it is the last one)."""
    state = AnnotationState()
    if not path.exists():
        return state
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict):
                try:
                    state.record(event)
                except (KeyError, TypeError, ValueError):
                    continue  # an event without the fields its kind needs: not one this code wrote
    return state


def check_same_run(state: AnnotationState, run: dict, folder: Path) -> None:
    """Refuse a folder whose journal another run wrote: the same command again resumes it."""
    if state.run is None:
        return
    changed = [f"{key} {state.run.get(key)!r} -> {run.get(key)!r}" for key in RUN_IDENTITY
               if state.run.get(key) != run.get(key)]
    if changed:
        raise ReftuneError(f"output folder {folder} holds another run's journal ({'; '.join(changed)}): "
                           f"use a new --output, or repeat that run's options to resume it")


def cache_key(model: str, prompt: str, sampling: dict, sample_index: int) -> str:
    """(model, prompt, sampling parameters, sample index) -> a short stable key."""
    blob = json.dumps([model, prompt, sampling, sample_index], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


class Journal:
    """Appends events to journal.jsonl, one line each, flushed at once; safe from several threads.
    `lock` also guards the AnnotationState that append() updates."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            needs_newline = path.exists() and path.stat().st_size > 0 and not _ends_with_newline(path)
            self._file = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise ReftuneError(f"cannot write the journal {path} ({exc.strerror}): "
                               f"choose a writable --output") from None
        if needs_newline:  # a kill cut the last line short: start the next event on its own line
            self._file.write("\n")

    def append(self, event: dict, state: AnnotationState | None = None) -> None:
        event = {"time": round(time.time(), 3), **event}
        # ASCII escapes: a U+2028 in a question would end the line for readers that split on it.
        line = json.dumps(event) + "\n"
        with self.lock:
            self._file.write(line)
            self._file.flush()
            if state is not None:
                state.record(event)

    def close(self) -> None:
        with self.lock:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as file:
        file.seek(-1, os.SEEK_END)
        return file.read(1) == b"\n"
