"""A model that helps: K CoTs for the open question from an OpenAI-compatible endpoint (`reftune serve`,
vLLM, a llama.cpp server), asked the way `reftune annotate --source model` asks (the same few-shot
prompt, client and cut of the completion), and checked by the one verification (programs in the
sandbox). The reviewer keeps or edits them; a kept one becomes a sample of the question, journaled
with where it came from. Nothing here knows HTTP routes or pages.
"""
from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from reftune.annotate.client import OpenAIClient, Options, RequestFailed
from reftune.annotate.prompts import STOP, cut_completion, read_few_shot
from reftune.annotate.sources import ModelPrompts, Question
from reftune.errors import ReftuneError
from reftune.review.checking import check_cots
from reftune.review.records import Record
from reftune.scoring.verification import Verdict
from reftune.tasks import Example, Task

DEFAULT_K = 4
MAX_K = 16
OPTIONS = Options(endpoint="--suggest-endpoint", model="--suggest-model", key=None)
# annotate's sampling, with fewer new tokens: a CoT is a few hundred tokens at most, and the few-shot
# prompt and the answer must fit a small model's context together (the tiny model's is 1,024)
SAMPLING = {"temperature": 0.7, "top_p": 1.0, "max_tokens": 320, "stop": STOP}
TIMEOUT_S = 120.0  # a slow model on a CPU takes a while for K CoTs; a person is waiting, so not longer
HELD = 1_000  # suggestions remembered for their Accept and Edit buttons


class SuggestFailed(ReftuneError):
    """The endpoint gave no suggestion (it went away, or refused the request): the page says why."""


@dataclass(frozen=True)
class Suggestion:
    """One CoT the model suggested for a question, checked."""

    id: str  # what the page sends back to keep or edit it
    record: int  # the question's record index
    text: str  # the CoT as checked (the completion cut as annotate cuts it)
    verdict: Verdict
    source: str  # "MODEL at ENDPOINT": journaled with the CoT when it is kept


@dataclass(frozen=True)
class Suggestions:
    """What one Suggest gave: the checked CoTs, and why the requests that failed did."""

    items: list[Suggestion]
    failures: list[str]


class Suggester:
    """Asks one endpoint's model for CoTs. Thread-safe: every reviewer's tab shares it."""

    def __init__(self, client: OpenAIClient, k: int = DEFAULT_K, prompt_file: str | None = None):
        self.client, self.k, self.prompt_file = client, k, prompt_file
        self.source = f"{client.model} at {client.endpoint}"
        self._held: OrderedDict[str, Suggestion] = OrderedDict()
        self._few_shot: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def suggest(self, task: Task, record: Record) -> Suggestions:
        """K CoTs for the record's question, asked at once, each checked. Raises SuggestFailed when
        no request was answered."""
        prompts = ModelPrompts(self.few_shot(task), False, self.client.model, SAMPLING)
        prompt = prompts.prompt(task, Question(Example(record.id, record.question, record.gold), ""))
        with ThreadPoolExecutor(max_workers=self.k, thread_name_prefix="suggest") as pool:
            replies = list(pool.map(lambda _: self._ask(prompt), range(self.k)))
        texts = [reply for reply in replies if not isinstance(reply, RequestFailed)]
        failures = sorted({str(reply) for reply in replies if isinstance(reply, RequestFailed)})
        if not texts:
            raise SuggestFailed(f"no suggestion: {self.source} answered {failures[0]}; is it still running? "
                                f"Everything else here works without it")
        verdicts = check_cots(task, texts, [record.gold] * len(texts))
        items = [Suggestion(secrets.token_urlsafe(9), record.index, text, verdict, self.source)
                 for text, verdict in zip(texts, verdicts)]
        self._hold(items)
        return Suggestions(items, failures)

    def _ask(self, prompt: str) -> str | RequestFailed:
        try:
            return cut_completion(self.client.complete(prompt, SAMPLING).text)
        except RequestFailed as failure:
            return failure

    def few_shot(self, task: Task) -> str:
        """The examples before each question: --suggest-prompt-file's, else the task's built-in ones
        (annotate's default), read once."""
        key = (task.name, task.style)
        if key not in self._few_shot:
            self._few_shot[key] = read_few_shot(task.name, task.style, self.prompt_file, "--suggest-prompt-file")
        return self._few_shot[key]

    def _hold(self, items: list[Suggestion]) -> None:
        with self._lock:
            for item in items:
                self._held[item.id] = item
            while len(self._held) > HELD:
                self._held.popitem(last=False)

    def held(self, record: Record, suggestion_id: str) -> Suggestion:
        """A suggestion shown for `record`, for its Keep or Edit button."""
        with self._lock:
            found = self._held.get(suggestion_id)
        if found is None or found.record != record.index:
            raise ReftuneError("this suggestion is no longer held (the app restarted since it was shown): "
                               "press Suggest again")
        return found


def open_suggester(endpoint: str, model: str | None, k: int = DEFAULT_K, prompt_file: str | None = None) -> Suggester:
    """The suggester for `--suggest-endpoint`, once the endpoint has answered: one line for a URL that
    cannot be one, an endpoint that does not answer, a model it does not serve, or a prompt file
    without examples. Without --suggest-model, the one model the endpoint lists."""
    if not 1 <= k <= MAX_K:
        raise ReftuneError(f"--suggest-k must be in 1..{MAX_K}, got {k}")
    if prompt_file is not None:
        read_few_shot("gsm8k", "nl", prompt_file, "--suggest-prompt-file")  # read now: one line if it is not one
    probe = OpenAIClient(endpoint, model or "", None, timeout=10.0, retries=1, backoff=0.5, options=OPTIONS)
    names = probe.served_models()
    if model is None:
        if len(names) != 1:
            listed = f"it serves {names[:10]}" if names else "it lists no models"
            raise ReftuneError(f"--suggest-endpoint {endpoint}: {listed}; name one with --suggest-model")
        model = names[0]
    elif names and model not in names:
        raise ReftuneError(f"--suggest-model {model!r}: endpoint {endpoint} serves {names[:10]}")
    # one try per request: a person is waiting, and can press Suggest again
    client = OpenAIClient(endpoint, model, None, timeout=TIMEOUT_S, retries=0, backoff=0.5, options=OPTIONS)
    return Suggester(client, k, prompt_file)
