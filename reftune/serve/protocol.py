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

import time
import uuid
from dataclasses import dataclass

DEFAULT_MAX_TOKENS = 256


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


def completion_request(body, served_name: str, max_tokens_limit: int) -> GenerationRequest:
    body = _object(body)
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        prompts = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        prompts = list(prompt)
    else:
        raise BadRequest("'prompt' must be a string or a list of strings")
    return _request(body, prompts, served_name, max_tokens_limit, chat=False)


def chat_request(body, served_name: str, max_tokens_limit: int) -> GenerationRequest:
    body = _object(body)
    messages = body.get("messages")
    valid = isinstance(messages, list) and messages and all(
        isinstance(m, dict) and m.get("role") in ("system", "user", "assistant") and isinstance(m.get("content"), str)
        for m in messages)
    if not valid:
        raise BadRequest("'messages' must be a non-empty list of {role: system|user|assistant, content: string}")
    messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    return _request(body, [messages], served_name, max_tokens_limit, chat=True)


def _object(body) -> dict:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _request(body: dict, prompts: list, served_name: str, max_tokens_limit: int, chat: bool) -> GenerationRequest:
    model = body.get("model")
    if model is not None and model != served_name:
        raise BadRequest(f"model {model!r} not found: this server serves {served_name!r}", status=404)
    max_tokens = _number(body, "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens",
                         min(DEFAULT_MAX_TOKENS, max_tokens_limit), int, 1, max_tokens_limit)
    temperature = _number(body, "temperature", 1.0, float, 0.0, 10.0)
    top_p = _number(body, "top_p", 1.0, float, 1e-6, 1.0)
    n = _number(body, "n", 1, int, 1, 64)
    stop = body.get("stop")
    if stop is None:
        stop = ()
    elif isinstance(stop, str):
        stop = (stop,)
    elif isinstance(stop, list) and len(stop) <= 8 and all(isinstance(s, str) and s for s in stop):
        stop = tuple(stop)
    else:
        raise BadRequest("'stop' must be a string or a list of up to 8 non-empty strings")
    if body.get("stream"):
        raise BadRequest("'stream' is not supported: leave it out or false")
    return GenerationRequest(prompts, max_tokens, temperature, top_p, n, tuple(s for s in stop if s), chat)


def _number(body: dict, key: str, default, kind, low, high):
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
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
