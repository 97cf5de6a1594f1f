"""A small client for OpenAI-compatible endpoints (/models, /completions, /chat/completions), on the
standard library: a per-request timeout, retries with exponential backoff on 429, 5xx, timeouts and
lost connections, and one clear line for a setup mistake (an unreachable endpoint, an HTML page, an
unknown model, a refused key)."""
from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from reftune.errors import ReftuneError

RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
SETUP_STATUSES = frozenset({401, 403, 404})  # a refused key, a wrong URL or model: no request can succeed
MAX_RETRY_AFTER_S = 30.0
ENDPOINT_EXAMPLE = "http://127.0.0.1:8000/v1"


@dataclass(frozen=True)
class Options:
    """The command-line options a setup mistake's message names (annotate's by default)."""

    endpoint: str = "--endpoint"
    model: str = "--api-model"
    key: str | None = "--api-key-env"  # None: the command sends no key


def check_endpoint(endpoint: str, option: str = "--endpoint") -> None:
    """One line for an --endpoint that cannot be an API's URL: no retry would fix it.

    >>> check_endpoint("https://api.example.com/v1")
    >>> check_endpoint("htp:/x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    reftune.errors.ReftuneError: --endpoint 'htp:/x': the scheme 'htp' is not http or https: give the API's ...
    """
    try:
        parts = urllib.parse.urlsplit(endpoint)
        parts.port  # noqa: B018 (reading it checks it: a port that is not a number or past 65535 raises)
    except ValueError as exc:
        raise ReftuneError(f"{option} {endpoint!r} is not a URL ({exc}): give the API's base URL, "
                           f"e.g. {ENDPOINT_EXAMPLE}") from None
    if parts.scheme not in ("http", "https"):
        scheme = f"the scheme {parts.scheme!r} is not http or https" if parts.scheme else "no http:// or https://"
        raise ReftuneError(f"{option} {endpoint!r}: {scheme}: give the API's base URL, e.g. {ENDPOINT_EXAMPLE}")
    if not parts.hostname:
        raise ReftuneError(f"{option} {endpoint!r} names no host: give the API's base URL, e.g. {ENDPOINT_EXAMPLE}")


@dataclass(frozen=True)
class Completion:
    """One sampled completion and what it cost."""

    text: str
    tokens_in: int  # prompt tokens, from the response's usage (0 when it has none)
    tokens_out: int  # completion tokens


class RequestFailed(Exception):
    """A request that failed; `retryable` when trying again may help, `setup` when no request can
    succeed until the user fixes an option (a refused key, an unknown model or path), `refused` when
    the endpoint refused this request as it was sent (HTTP 400, 413, 422: a prompt past the model's
    context, a sampling option it does not take)."""

    def __init__(self, message: str, retryable: bool, retry_after: float | None = None, setup: bool = False,
                 refused: bool = False):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.setup = setup
        self.refused = refused


class OpenAIClient:
    """Thread-safe: one instance serves all worker threads. `stopping` (an Event) cuts backoff waits
    short and stops further tries, for a clean Ctrl-C."""

    def __init__(self, endpoint: str, model: str, api_key: str | None, timeout: float, retries: int,
                 backoff: float, stopping: threading.Event | None = None, options: Options = Options()):
        check_endpoint(endpoint, options.endpoint)
        self.options = options
        self.endpoint = endpoint.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.stopping = stopping or threading.Event()

    # ---- the calls ---------------------------------------------------------------------------------
    def check_model(self) -> None:
        """Fail fast, in one line, when the endpoint cannot serve: unreachable after the retries, not
        an API (HTML or not JSON), a refused key, or a model it does not list."""
        names = self.served_models()
        if names and self.model not in names:
            raise ReftuneError(f"unknown model {self.model!r}: endpoint {self.endpoint} serves {names[:10]}; "
                               f"fix {self.options.model}")

    def served_models(self) -> list[str]:
        """The names the endpoint's /models lists ([] for an API without /models: the first completion
        will tell); one line when it cannot serve at all."""
        try:
            listing = self._with_retries("GET", "/models", None)
        except RequestFailed as exc:
            if "HTTP 404" in str(exc) and "HTML" not in str(exc):
                return []
            raise ReftuneError(f"endpoint {self.endpoint}: {exc}") from None
        return [entry.get("id") for entry in listing.get("data", []) if isinstance(entry, dict)]

    def complete(self, prompt: str | list[dict], sampling: dict) -> Completion:
        """One completion of a prompt (a string for /completions, messages for /chat/completions)."""
        chat = isinstance(prompt, list)
        body = {"model": self.model, **sampling, "n": 1, ("messages" if chat else "prompt"): prompt}
        reply = self._with_retries("POST", "/chat/completions" if chat else "/completions", body)
        try:
            choice = reply["choices"][0]
            text = choice["message"]["content"] if chat else choice["text"]
            usage = reply.get("usage") or {}
            return Completion(str(text), int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)))
        except (KeyError, IndexError, TypeError, ValueError):
            raise RequestFailed(f"a reply without choices[0].{'message.content' if chat else 'text'}: "
                                f"{json.dumps(reply)[:120]}", retryable=False) from None

    # ---- one request, and its retries ----------------------------------------------------------------
    def _with_retries(self, method: str, path: str, body: dict | None) -> dict:
        for attempt in range(self.retries + 1):
            try:
                return self._request(method, path, body)
            except RequestFailed as exc:
                if not exc.retryable or attempt == self.retries or self.stopping.is_set():
                    if exc.retryable and attempt == self.retries:
                        raise RequestFailed(f"{exc} (after {attempt + 1} tries)", retryable=True) from None
                    raise
                wait = min(exc.retry_after, MAX_RETRY_AFTER_S) if exc.retry_after else self.backoff * 2 ** attempt
                if self.stopping.wait(wait):
                    raise
        raise AssertionError("unreachable")

    def _request(self, method: str, path: str, body: dict | None) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(self.endpoint + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise _http_failure(exc, self.options) from None
        except (TimeoutError, socket.timeout):
            raise RequestFailed(f"no reply within {self.timeout:g} s", retryable=True) from None
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RequestFailed(f"cannot connect ({reason})", retryable=True) from None
        return _parse_json(raw)


def _http_failure(error: urllib.error.HTTPError, options: Options = Options()) -> RequestFailed:
    try:
        detail = error.read().decode("utf-8", "replace")
    except OSError:
        detail = ""
    try:
        message = json.loads(detail)["error"]
        message = message.get("message", message) if isinstance(message, dict) else message
    except (ValueError, KeyError, TypeError):
        message = ("an HTML page, not JSON" if detail.lstrip()[:1] == "<" else " ".join(detail.split())[:120])
    retry_after = error.headers.get("Retry-After") if error.headers else None
    try:
        retry_after = float(retry_after) if retry_after else None
    except ValueError:
        retry_after = None
    key = f"; check the key in {options.key}" if options.key else "; the endpoint wants a key, and none is sent"
    hint = {401: key, 403: key,
            404: f"; is the URL the API's base (often ending in /v1) and {options.model} right?"}.get(error.code, "")
    retryable, setup = error.code in RETRYABLE_STATUSES, error.code in SETUP_STATUSES
    return RequestFailed(f"HTTP {error.code}: {message}{hint}", retryable=retryable, retry_after=retry_after,
                         setup=setup, refused=400 <= error.code < 500 and not (retryable or setup))


def _parse_json(raw: bytes) -> dict:
    text = raw.decode("utf-8", "replace")
    if text.lstrip()[:1] == "<":
        raise RequestFailed("the endpoint answered with an HTML page, not JSON: is the URL the API's base "
                            "(often ending in /v1)?", retryable=False)
    try:
        reply = json.loads(text)
    except json.JSONDecodeError:
        raise RequestFailed(f"the endpoint answered with something that is not JSON: {text[:60]!r}",
                            retryable=False) from None
    if not isinstance(reply, dict):
        raise RequestFailed(f"the endpoint answered with JSON that is not an object: {text[:60]!r}", retryable=False)
    return reply
