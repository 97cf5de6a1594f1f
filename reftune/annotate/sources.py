"""Where CoTs come from: the data's own notes, an OpenAI-compatible endpoint, or a local model. Each
source hands every CoT to a Recorder, which verifies it and writes the verdict to the journal."""
from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from reftune.annotate.client import Completion, OpenAIClient, RequestFailed
from reftune.annotate.journal import REQUEST_FAILED, AnnotationState, Journal, cache_key
from reftune.annotate.notes import notes_to_program
from reftune.annotate.prompts import chat_messages, completion_prompt, cut_completion, stored_cot
from reftune.errors import ReftuneError
from reftune.scoring.verification import verify_cots
from reftune.tasks import Example


@dataclass(frozen=True)
class Question:
    """A question to annotate."""

    example: Example
    rationale: str  # GSM8K: the rationale with its calculator notes; "" for other sources


@dataclass(frozen=True)
class Candidate:
    """A CoT to verify."""

    question: Question
    sample_index: int
    checked_text: str  # what verification reads (an N-CoT with its answer line, or the program)
    answer_cot: str  # what the training file keeps


class Recorder:
    """Verifies candidates (one batched call) and journals each verdict; keeps up to K distinct
    verified CoTs per question."""

    def __init__(self, task, journal: Journal, state: AnnotationState, keep_per_question: int, on_verdict=None):
        self.task = task
        self.journal = journal
        self.state = state
        self.keep_per_question = keep_per_question
        self.on_verdict = on_verdict or (lambda: None)

    def finished(self, question: Question, num_samples: int) -> bool:
        with self.journal.lock:  # request threads ask while this thread records
            return question_finished(self.state, question.example.id, num_samples, self.keep_per_question)

    def record(self, candidates: list[Candidate]) -> None:
        verdicts = verify_cots(self.task, [c.checked_text for c in candidates],
                               [c.question.example.answer for c in candidates])
        for candidate, verdict in zip(candidates, verdicts):
            event = {"item_id": candidate.question.example.id, "sample_index": candidate.sample_index,
                     "reason": verdict.status, "detail": verdict.detail, "answer_cot": candidate.answer_cot}
            if verdict.ok:
                self.journal.append({"event": "verified", **event, "kept": self._keeps(candidate)}, self.state)
            else:
                self.journal.append({"event": "rejected", **event}, self.state)
            self.on_verdict()

    def reject(self, question: Question, sample_index: int, reason: str, detail: str) -> None:
        self.journal.append({"event": "rejected", "item_id": question.example.id, "sample_index": sample_index,
                             "reason": reason, "detail": detail, "answer_cot": ""}, self.state)
        self.on_verdict()

    def _keeps(self, candidate: Candidate) -> bool:
        kept = self.state.kept(candidate.question.example.id)
        seen = {normalized(event["answer_cot"]) for event in kept}
        return len(kept) < self.keep_per_question and normalized(candidate.answer_cot) not in seen


def question_finished(state: AnnotationState, item_id: str, num_samples: int, keep_per_question: int) -> bool:
    """K CoTs kept, or a verdict for every sample that no new request could change."""
    return (len(state.kept(item_id)) >= keep_per_question
            or all(state.sample_done(item_id, index) for index in range(num_samples)))


def normalized(cot: str) -> str:
    """The text two CoTs must share to count as the same: case and spacing ignored."""
    return re.sub(r"\s+", " ", cot).strip().lower()


# ---- source: the data's own notes -------------------------------------------------------------------
def notes_candidate(task, question: Question) -> Candidate | str:
    """The CoT the data itself carries (GSM8K notes made into a program, SVAMP's equation, a CoT of the
    file in the task's style), or why there is none."""
    example = question.example
    if task.style == "python" and question.rationale:
        conversion = notes_to_program(example.question, question.rationale, example.answer)
        if not conversion.program:
            return conversion.problem
        return Candidate(question, 0, conversion.program, conversion.program)
    if not example.cot:
        return f"the record has no {task.style!r} CoT and no calculator notes to convert"
    return Candidate(question, 0, task.target(example), example.cot.strip())


def annotate_from_notes(task, questions: list[Question], recorder: Recorder) -> None:
    todo = [question for question in questions if not recorder.finished(question, 1)]
    for start in range(0, len(todo), 256):  # a few hundred programs per sandbox call, journaled as they come
        candidates = []
        for question in todo[start:start + 256]:
            made = notes_candidate(task, question)
            if isinstance(made, str):
                recorder.reject(question, 0, "no_answer", made)
            else:
                candidates.append(made)
        if candidates:
            recorder.record(candidates)


# ---- source: a model ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelPrompts:
    """How a question is put to the model and what a response is filed under."""

    few_shot: str  # the examples before each question
    chat: bool  # messages instead of a plain prompt
    model_name: str  # for the cache key: the endpoint's model or the local model
    sampling: dict  # temperature, top_p, max_tokens, stop

    def prompt(self, task, question: Question):
        if self.chat:
            return chat_messages(self.few_shot, task.style, question.example.question)
        return completion_prompt(self.few_shot, task.prompt(question.example))

    def key(self, task, question: Question, sample_index: int) -> str:
        return cache_key(self.model_name, repr(self.prompt(task, question)), self.sampling, sample_index)


def candidate_from_completion(task, question: Question, sample_index: int, text: str) -> Candidate:
    cot = cut_completion(text)
    return Candidate(question, sample_index, cot, stored_cot(task.style, cot))


def annotate_from_endpoint(task, questions: list[Question], recorder: Recorder, client: OpenAIClient,
                           prompts: ModelPrompts, num_samples: int, concurrency: int) -> None:
    """Requests in a pool of `concurrency` threads; each response is journaled as it arrives (by the
    thread that got it) and verified here. A request that fails for good is a "request_failed"
    reject, tried again by the next run; a setup mistake (refused key, unknown model) stops the run,
    and so does a request the endpoint refuses (HTTP 400) before any of this run's was answered."""
    state, journal = recorder.state, recorder.journal
    jobs = [(question, index) for question in questions if not recorder.finished(question, num_samples)
            for index in range(num_samples) if not state.sample_done(question.example.id, index)]
    # set once the endpoint has answered a request with these options (in an earlier run, or in this
    # one): then a refusal is the question's own, not the options'
    answered = threading.Event()
    if any(prompts.key(task, question, index) in state.responses for question in questions
           for index in range(num_samples)):
        answered.set()
    # set by the worker that met a failure which stops the run, so that the other workers send nothing
    # more while the main thread raises it (a worker is free again before the main thread reads it)
    halting = threading.Event()

    def fetch(question: Question, index: int) -> Completion | RequestFailed | None:
        if halting.is_set() or recorder.finished(question, num_samples):
            return None  # the run is stopping, or K CoTs were kept meanwhile: this request is not needed
        key = prompts.key(task, question, index)
        if key in state.responses:
            return state.responses[key]  # the cache: a response an earlier run paid for
        try:
            completion = client.complete(prompts.prompt(task, question), prompts.sampling)
        except RequestFailed as failure:
            if failure.setup or (failure.refused and not answered.is_set()):
                halting.set()
            return failure
        answered.set()
        journal.append({"event": "response", "item_id": question.example.id, "sample_index": index,
                        "cache_key": key, "text": completion.text, "tokens_in": completion.tokens_in,
                        "tokens_out": completion.tokens_out}, state)
        return completion

    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="annotate")
    try:
        pending = {pool.submit(fetch, question, index): (question, index) for question, index in jobs}
        for future in as_completed(pending):
            question, index = pending[future]
            outcome = future.result()
            _file_outcome(task, recorder, question, index, outcome, client.endpoint, answered.is_set())
    finally:
        client.stopping.set()
        pool.shutdown(wait=False, cancel_futures=True)


def _file_outcome(task, recorder: Recorder, question: Question, index: int, outcome, endpoint: str,
                  answered: bool) -> None:
    if outcome is None:
        return
    if isinstance(outcome, RequestFailed):
        if outcome.setup:
            raise ReftuneError(f"endpoint {outcome}") from None
        if outcome.refused and not answered:
            # every request carries the same options, so the rest would be refused too (the
            # local-model path stops the same way for a prompt past the context)
            raise ReftuneError(f"endpoint {endpoint} refused a request before answering any ({outcome}): fix the "
                               f"options it names (--max-new-tokens, --temperature, --top-p, --prompt-file), then "
                               f"run the same command again") from None
        recorder.reject(question, index, REQUEST_FAILED, str(outcome))
        return
    recorder.record([candidate_from_completion(task, question, index, outcome.text)])


def annotate_from_local(task, questions: list[Question], recorder: Recorder, sampler, prompts: ModelPrompts,
                        num_samples: int, batch_size: int) -> None:
    """Batches of questions, each batch one sampling call of num_samples per question; a question
    whose responses are all in the journal's cache is not sampled again."""
    from reftune.annotate.local import LocalSamplingRequest

    state, journal = recorder.state, recorder.journal
    todo = [question for question in questions if not recorder.finished(question, num_samples)]
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        keys = [[prompts.key(task, question, index) for index in range(num_samples)] for question in batch]
        to_sample = [i for i, question_keys in enumerate(keys) if any(k not in state.responses for k in question_keys)]
        if to_sample:
            request = LocalSamplingRequest([prompts.prompt(task, batch[i]) for i in to_sample], num_samples,
                                           prompts.sampling["temperature"], prompts.sampling["top_p"],
                                           prompts.sampling["max_tokens"])
            for i, completions in zip(to_sample, sampler.complete(request)):
                for index, completion in enumerate(completions):
                    journal.append({"event": "response", "item_id": batch[i].example.id, "sample_index": index,
                                    "cache_key": keys[i][index], "text": completion.text,
                                    "tokens_in": completion.tokens_in, "tokens_out": completion.tokens_out}, state)
        candidates = [candidate_from_completion(task, question, index, state.responses[keys[i][index]].text)
                      for i, question in enumerate(batch) for index in range(num_samples)
                      if not state.sample_done(question.example.id, index)]
        for candidate in candidates:  # one at a time: K distinct CoTs kept, in sample order
            if not recorder.finished(candidate.question, num_samples):
                recorder.record([candidate])
