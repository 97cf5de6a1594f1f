"""The OpenAI wire format, as plain functions: a request body -> a validated GenerationRequest (or a
BadRequest naming the field), and finished generations -> the response body. No web framework here.

>>> request = completion_request({"model": "m", "prompt": "2 + 2 =", "max_tokens": 8, "stop": "\\n"}, "m", 64)
>>> request.prompts, request.max_tokens, request.stop
(['2 + 2 ='], 8, ('\\n',))
>>> completion_request({"prompt": 3}, "m", 64)
Traceback (most recent call last):
...
reftune.serve.protocol.BadRequest: 'prompt' must be a string or a list of strings
"""
from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass

DEFAULT_MAX_TOKENS = 256
GREEDY_BELOW = 1e-5  # a temperature below this samples as greedy decoding does (vLLM's _SAMPLING_EPS)
DEFAULT_MAX_ROWS = 64  # completions one request may ask for (prompts x n): `reftune serve --max-request-rows`


class BadRequest(Exception):
    """A request the server cannot answer; `status` is the HTTP status to send (400 or 404)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class GenerationRequest:
    """What one HTTP request asks the model for."""

    prompts: list  # completions: strings; chat: one list of {"role", "content"} messages
    max_tokens: int  # most new tokens per completion
    temperature: float  # 0 is greedy
    top_p: float
    n: int  # completions per prompt
    stop: tuple[str, ...]  # the text is cut before the first of these
    chat: bool


@dataclass(frozen=True)
class Generation:
    """One finished completion."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (a stop token or string) or "length"


def parse_body(raw: bytes):
    """The request body as JSON, strictly: NaN and Infinity are not JSON numbers, and a body nested
    deeper than the parser goes is refused like any other malformed body (a 400, not a 500)."""
    def refuse(constant: str):
        raise BadRequest(f"the body is not valid JSON: {constant} is not a JSON number (send a finite number)")

    try:
        return json.loads(raw, parse_constant=refuse)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON ({exc.msg} at position {exc.pos})") from None
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text") from None
    except RecursionError:
        raise BadRequest("the body's JSON is nested too deeply to be a request") from None


def completion_request(body, served_name: str, max_tokens_limit: int,
                       max_rows: int = DEFAULT_MAX_ROWS) -> GenerationRequest:
    body = _object(body)
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        prompts = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        prompts = list(prompt)
    else:
        raise BadRequest("'prompt' must be a string or a list of strings")
    for text in prompts:
        _text(text, "prompt")
    return _request(body, prompts, served_name, max_tokens_limit, max_rows, chat=False)


def chat_request(body, served_name: str, max_tokens_limit: int, max_rows: int = DEFAULT_MAX_ROWS) -> GenerationRequest:
    body = _object(body)
    messages = body.get("messages")
    valid = isinstance(messages, list) and messages and all(
        isinstance(m, dict) and m.get("role") in ("system", "user", "assistant") and isinstance(m.get("content"), str)
        for m in messages)
    if not valid:
        raise BadRequest("'messages' must be a non-empty list of {role: system|user|assistant, content: string}")
    messages = [{"role": m["role"], "content": _text(m["content"], "messages")} for m in messages]
    return _request(body, [messages], served_name, max_tokens_limit, max_rows, chat=True)


def _text(text: str, key: str) -> str:
    """`text` when it is text a tokenizer can take; JSON lets a lone surrogate (\\ud800) through."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest(f"'{key}' holds {exc.object[exc.start:exc.end]!r}, a lone surrogate, not text: "
                         f"send valid UTF-8") from None
    return text


def _object(body) -> dict:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _request(body: dict, prompts: list, served_name: str, max_tokens_limit: int, max_rows: int,
             chat: bool) -> GenerationRequest:
    model = body.get("model")
    if model is not None and model != served_name:
        raise BadRequest(f"model {model!r} not found: this server serves {served_name!r}", status=404)
    max_tokens = _number(body, "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens",
                         min(DEFAULT_MAX_TOKENS, max_tokens_limit), int, 1, max_tokens_limit)
    temperature = _number(body, "temperature", 1.0, float, 0.0, 10.0)
    if temperature < GREEDY_BELOW:  # logits / 1e-300 overflow to inf: as good as greedy, so greedy (vLLM's rule)
        temperature = 0.0
    top_p = _number(body, "top_p", 1.0, float, 1e-6, 1.0)
    n = _number(body, "n", 1, int, 1, max_rows)
    if len(prompts) * n > max_rows:
        raise BadRequest(f"this request asks for {len(prompts) * n} completions ({len(prompts)} prompts x n={n}); "
                         f"the server answers at most {max_rows} per request: split it, or start the server "
                         f"with a higher --max-request-rows")
    stop = body.get("stop")
    if stop is None:
        stop = ()
    elif isinstance(stop, str):
        stop = (_text(stop, "stop"),)
    elif isinstance(stop, list) and len(stop) <= 8 and all(isinstance(s, str) and s for s in stop):
        stop = tuple(_text(s, "stop") for s in stop)
    else:
        raise BadRequest("'stop' must be a string or a list of up to 8 non-empty strings")
    if body.get("stream"):
        raise BadRequest("'stream' is not supported: leave it out or false")
    return GenerationRequest(prompts, max_tokens, temperature, top_p, n, tuple(s for s in stop if s), chat)


def _number(body: dict, key: str, default, kind, low, high):
    value = body.get(key, default)
    if value is None:
        return default
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or (kind is int and value != int(value))):
        raise BadRequest(f"'{key}' must be a{'n integer' if kind is int else ' number'}, got {value!r}")
    if not low <= value <= high:
        raise BadRequest(f"'{key}' must be between {low} and {high}, got {value}")
    return kind(value)


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """The text before the first stop string, and whether one was found."""
    cuts = [text.find(s) for s in stop if s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


def completion_response(served_name: str, generations: list[Generation], chat: bool, n: int) -> dict:
    """The body of a /v1/completions or /v1/chat/completions answer; `generations` hold n per prompt,
    and each prompt's tokens count once (the OpenAI convention)."""
    if chat:
        choices = [{"index": i, "message": {"role": "assistant", "content": g.text}, "finish_reason": g.finish_reason}
                   for i, g in enumerate(generations)]
    else:
        choices = [{"index": i, "text": g.text, "finish_reason": g.finish_reason, "logprobs": None}
                   for i, g in enumerate(generations)]
    prompt_tokens = sum(g.prompt_tokens for g in generations[::n])
    completion_tokens = sum(g.completion_tokens for g in generations)
    return {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
            "model": served_name, "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def models_response(served_name: str) -> dict:
    return {"object": "list", "data": [{"id": served_name, "object": "model", "created": 0, "owned_by": "reftune"}]}


def error_body(message: str, status: int) -> dict:
    kind = "not_found_error" if status == 404 else "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "code": status}}
