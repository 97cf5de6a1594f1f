"""Batching: requests that arrive while the model is busy (or within a few milliseconds of each other)
are answered together, by `reftune.generation.rollout.sample` calls of at most max_batch rows per set of sampling
parameters (a large request is answered in pieces, so memory is bounded by max_batch, not by the
request). The model runs on one thread; the web server only waits on futures. Requests that stream or
ask for log-probs are followed token by token (reftune.serve.tracker); a request whose future is
cancelled (its client went away) is dropped from the queue, and a sampling call whose every request
was cancelled stops at its next token."""
from __future__ import annotations

import copy
import queue
import threading
from collections import defaultdict
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Callable

import torch

from reftune.generation.rollout import SamplingParams, sample, stop_token_ids
from reftune.serve.protocol import BadRequest, Delta, Generation, GenerationRequest, cut_at_stop
from reftune.serve.tracker import Abandoned, RowOwner, Tracker
from reftune.tasks.prompting import render_chat

GATHER_SECONDS = 0.005  # how long the first request of a batch waits for company


@dataclass(frozen=True)
class _Job:
    """One request waiting for the model."""

    request: GenerationRequest
    texts: list[str]  # the prompts as the model reads them (chat messages rendered)
    prompt_tokens: list[int]  # tokens per prompt
    future: Future  # resolves to a list of Generations, n per prompt, prompt by prompt; cancelled: abandoned
    stream: Callable[[Delta], None] | None = None  # streamed pieces go here, called on the model's thread

    def owners(self) -> list[RowOwner]:
        """Its rows, in the order they are sampled (prompt by prompt, n each)."""
        n = self.request.n
        return [RowOwner(self.request, self.future, index, self.stream, self.prompt_tokens[index // n])
                for index in range(len(self.texts) * n)]


class Batcher:
    def __init__(self, policy, max_batch: int, seed: int):
        self.policy = policy
        # Requests are tokenised on the web server's worker threads while the model's thread samples:
        # a tokenizer of their own, since encoding with padding mutates the one sampling uses.
        self.counting_tokenizer = copy.deepcopy(policy.tokenizer)
        self.max_batch = max_batch
        self.generator = torch.Generator().manual_seed(seed)
        self.context = int(getattr(policy.model.config, "max_position_embeddings", 0) or 0)
        self.batch_sizes: list[int] = []  # rows per sampling call, for tests and curiosity
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="reftune-serve-model", daemon=True)
        self._thread.start()

    def submit(self, request: GenerationRequest, stream: Callable[[Delta], None] | None = None) -> Future:
        """Queue a request; a prompt the model cannot take raises BadRequest here, at once. It tokenises
        the prompts: call it off the event loop (a prompt of megabytes takes seconds). stream: called
        with each piece of text as it is generated (a streamed request). Cancel the future to abandon
        the request."""
        texts = [self.render(prompt) for prompt in request.prompts]
        lengths = [len(self.counting_tokenizer(text)["input_ids"]) for text in texts]
        for length in lengths:
            if length == 0:
                raise BadRequest("the prompt is empty")
            if self.context and length + request.max_tokens > self.context:
                raise BadRequest(f"the prompt has {length} tokens; with max_tokens {request.max_tokens} that exceeds "
                                 f"the model's context of {self.context} tokens: shorten it or ask for fewer tokens")
        job = _Job(request, texts, lengths, Future(), stream)
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def render(self, prompt) -> str:
        if isinstance(prompt, str):
            return prompt
        rendered = render_chat(self.counting_tokenizer, prompt)
        if rendered is None:
            raise BadRequest("this model has no chat template: use /v1/completions with a plain prompt")
        return rendered

    # ---- the model's thread -----------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [job for job in self._gather(first) if not job.future.cancelled()]
            groups: dict[tuple, list[_Job]] = defaultdict(list)
            for job in jobs:
                request = job.request
                groups[(request.temperature, request.top_p, request.top_k, request.max_tokens)].append(job)
            for (temperature, top_p, top_k, max_tokens), group in groups.items():
                self._answer(group, SamplingParams(temperature=temperature, top_p=top_p, top_k=top_k,
                                                   max_new_tokens=max_tokens))

    def _gather(self, first: _Job) -> list[_Job]:
        """The first job and whatever else arrives soon, up to max_batch prompt rows."""
        jobs, rows = [first], _rows(first)
        while rows < self.max_batch:
            try:
                job = self._queue.get(timeout=GATHER_SECONDS)
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # close() after this batch
                break
            jobs.append(job)
            rows += _rows(job)
        return jobs

    def _answer(self, jobs: list[_Job], params: SamplingParams) -> None:
        """All rows of `jobs`, sampled max_batch rows per call; each future gets its own rows. A failure
        fails these requests (a 500 each), never the server."""
        prompts = [text for job in jobs for text in job.texts for _ in range(job.request.n)]
        owners = [owner for job in jobs for owner in job.owners()]
        generations: list[Generation | None] = []
        try:
            for start in range(0, len(prompts), self.max_batch):
                generations += self._sample(prompts[start:start + self.max_batch],
                                            owners[start:start + self.max_batch], params)
        except Exception as exc:  # the server must outlive whatever one batch does
            for job in jobs:
                _settle(job.future, exception=exc)
            return
        row = 0
        for job in jobs:
            _settle(job.future, generations[row:row + _rows(job)])
            row += _rows(job)

    def _sample(self, prompts: list[str], owners: list[RowOwner], params: SamplingParams) -> list[Generation | None]:
        """One sampling call; None for the rows of abandoned requests."""
        if all(owner.future.cancelled() for owner in owners):
            return [None] * len(prompts)
        tracker = None
        if any(owner.tracked for owner in owners):
            tracker = Tracker(owners, self.policy.tokenizer, stop_token_ids(self.policy.model, self.policy.tokenizer))
        try:
            rollout = sample(self.policy.model, self.policy.tokenizer, prompts, params, generator=self.generator,
                             observe=tracker)
        except Abandoned:
            return [None] * len(prompts)
        self.batch_sizes.append(len(prompts))
        finished, tokens_out = rollout.finished.tolist(), rollout.response_mask.sum(dim=1).tolist()
        if tracker is not None:
            tracker.finish(finished)
        found = []
        for row, owner in enumerate(owners):
            followed = tracker.rows[row] if tracker is not None else None
            if followed is not None:  # its text as followed (and streamed), with its log-probs
                found.append(Generation(followed.final_text(), owner.prompt_tokens, int(tokens_out[row]),
                                        followed.finish_reason, followed.final_entries()))
                continue
            text, stopped = cut_at_stop(rollout.texts[row], owner.request.stop)
            found.append(Generation(text, owner.prompt_tokens, int(tokens_out[row]),
                                    "stop" if stopped or finished[row] else "length"))
        return found


def _rows(job: _Job) -> int:
    return len(job.texts) * job.request.n


def _settle(future: Future, result=None, exception: BaseException | None = None) -> None:
    """Resolve a future unless its request was abandoned (cancelled) meanwhile."""
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass
