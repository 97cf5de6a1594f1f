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
MAX_LOGPROBS = 20  # alternatives per token a request may ask for (vLLM's default cap; OpenAI's chat cap)
# OpenAI parameters this server does not implement, with the values that ask for nothing (null always
# does): any other value is refused with a 400, never silently dropped
NOT_SUPPORTED = {"echo": (False,), "best_of": (1,), "suffix": ("",), "logit_bias": ({},), "presence_penalty": (0,),
                 "frequency_penalty": (0,), "tools": ([],), "functions": ([],), "tool_choice": ("none", "auto"),
                 "response_format": ({"type": "text"},), "modalities": (["text"],), "audio": (), "prediction": ()}


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
    top_k: int = 0  # keep the k most likely tokens; 0 keeps all
    logprobs: int | None = None  # None: no log-probs; k: each token's, with its k most likely alternatives
    stream: bool = False  # answer as server-sent events, text as it is generated
    include_usage: bool = False  # streaming: a last chunk with the token counts (stream_options)


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token's log-probability under the model (temperature 1, nothing filtered: what
    vLLM reports by default), with the most likely alternatives at its position."""

    token: str  # the token as the tokenizer decodes it alone
    logprob: float
    top: tuple[tuple[str, float], ...]  # (token, logprob), most likely first
    offset: int  # where the token starts in its completion's text


@dataclass(frozen=True)
class Generation:
    """One finished completion."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (a stop token or string) or "length"
    logprobs: tuple[TokenLogprob, ...] | None = None  # when the request asked for them


@dataclass(frozen=True)
class Delta:
    """A streamed piece of one completion: text generated since the last piece, its tokens' log-probs
    (when asked for), and on the completion's last piece why it ended."""

    index: int  # the choice: prompt number x n + sample number
    text: str
    logprobs: tuple[TokenLogprob, ...] | None = None
    finish_reason: str | None = None


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
    _refuse_unsupported(body)
    max_tokens = _number(body, "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens",
                         min(DEFAULT_MAX_TOKENS, max_tokens_limit), int, 1, max_tokens_limit)
    temperature = _number(body, "temperature", 1.0, float, 0.0, 10.0)
    if temperature < GREEDY_BELOW:  # logits / 1e-300 overflow to inf: as good as greedy, so greedy (vLLM's rule)
        temperature = 0.0
    if body.get("seed") is not None and temperature > 0:
        raise BadRequest("'seed' is not supported when sampling: requests are batched and share one generator, "
                         "seeded by `reftune serve --seed`; leave it out (greedy decoding, temperature 0, may keep it)")
    top_p = _number(body, "top_p", 1.0, float, 1e-6, 1.0)
    top_k = max(_number(body, "top_k", 0, int, -1, 1_000_000), 0)  # vLLM's extension; -1 or 0: all tokens
    n = _number(body, "n", 1, int, 1, max_rows)
    if len(prompts) * n > max_rows:
        raise BadRequest(f"this request asks for {len(prompts) * n} completions ({len(prompts)} prompts x n={n}); "
                         f"the server answers at most {max_rows} per request: split it, or start the server "
                         f"with a higher --max-request-rows")
    stream, include_usage = _streaming(body)
    return GenerationRequest(prompts, max_tokens, temperature, top_p, n, _stop(body), chat, top_k,
                             _logprobs(body, chat), stream, include_usage)


def _refuse_unsupported(body: dict) -> None:
    for key, off in NOT_SUPPORTED.items():
        if body.get(key) is not None and body[key] not in off:
            raise BadRequest(f"'{key}' is not supported by reftune serve: leave it out"
                             + (f" or send {json.dumps(off[0])}" if off else ""))


def _stop(body: dict) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        return tuple(s for s in (_text(stop, "stop"),) if s)
    if isinstance(stop, list) and len(stop) <= 8 and all(isinstance(s, str) and s for s in stop):
        return tuple(_text(s, "stop") for s in stop)
    raise BadRequest("'stop' must be a string or a list of up to 8 non-empty strings")


def _logprobs(body: dict, chat: bool) -> int | None:
    """None when the request wants no log-probs, else how many alternatives per token. Chat asks with
    `logprobs: true` and `top_logprobs: k`; completions with `logprobs: k`."""
    if not chat:
        wanted = body.get("logprobs")
        return None if wanted is None or wanted is False else _number(body, "logprobs", 0, int, 0, MAX_LOGPROBS)
    wanted = body.get("logprobs")
    if wanted not in (None, True, False):
        raise BadRequest(f"'logprobs' must be true or false in a chat request, got {wanted!r} (the number of "
                         f"alternatives goes in 'top_logprobs')")
    top = _number(body, "top_logprobs", 0, int, 0, MAX_LOGPROBS)
    if body.get("top_logprobs") is not None and not wanted:
        raise BadRequest("'top_logprobs' needs 'logprobs': true")
    return top if wanted else None


def _streaming(body: dict) -> tuple[bool, bool]:
    """(stream, include_usage) as the request sets them."""
    stream, options = body.get("stream"), body.get("stream_options")
    if stream not in (None, True, False):
        raise BadRequest(f"'stream' must be true or false, got {stream!r}")
    if options is None:
        return bool(stream), False
    if not stream:
        raise BadRequest("'stream_options' needs 'stream': true")
    if not isinstance(options, dict) or options.get("include_usage") not in (None, True, False):
        raise BadRequest("'stream_options' must be an object such as {\"include_usage\": true}")
    return True, bool(options.get("include_usage"))


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
        choices = [{"index": i, "message": {"role": "assistant", "content": g.text},
                    "logprobs": chat_logprobs(g.logprobs), "finish_reason": g.finish_reason}
                   for i, g in enumerate(generations)]
    else:
        choices = [{"index": i, "text": g.text, "finish_reason": g.finish_reason,
                    "logprobs": completion_logprobs(g.logprobs)} for i, g in enumerate(generations)]
    return {"id": response_id(chat), "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": served_name, "choices": choices, "usage": usage(generations, n)}


def usage(generations: list[Generation], n: int) -> dict:
    prompt_tokens = sum(g.prompt_tokens for g in generations[::n])
    completion_tokens = sum(g.completion_tokens for g in generations)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def response_id(chat: bool) -> str:
    return f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"


def completion_logprobs(entries: tuple[TokenLogprob, ...] | None) -> dict | None:
    """OpenAI's legacy completions layout: parallel lists, the alternatives as {token: logprob}.

    >>> completion_logprobs((TokenLogprob("4", -0.1, (("4", -0.1), ("5", -2.4)), 7),))
    {'tokens': ['4'], 'token_logprobs': [-0.1], 'top_logprobs': [{'4': -0.1, '5': -2.4}], 'text_offset': [7]}
    """
    if entries is None:
        return None
    return {"tokens": [e.token for e in entries], "token_logprobs": [e.logprob for e in entries],
            "top_logprobs": [dict(e.top) for e in entries], "text_offset": [e.offset for e in entries]}


def chat_logprobs(entries: tuple[TokenLogprob, ...] | None) -> dict | None:
    """OpenAI's chat layout: one object per token, each with its UTF-8 bytes and its alternatives."""
    if entries is None:
        return None

    def token(text: str, logprob: float) -> dict:
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    return {"content": [{**token(e.token, e.logprob), "top_logprobs": [token(t, lp) for t, lp in e.top]}
                        for e in entries]}


def merge_deltas(deltas: list[Delta]) -> list[Delta]:
    """Pieces that queued up while the client was being written to, one per choice (in the order the
    choices first come): fewer, larger events when the model runs ahead of the connection.

    >>> merged = merge_deltas([Delta(0, "a"), Delta(1, "x"), Delta(0, "b", None, "stop")])
    >>> [(d.index, d.text, d.finish_reason) for d in merged]
    [(0, 'ab', 'stop'), (1, 'x', None)]
    """
    merged: dict[int, Delta] = {}
    for delta in deltas:
        before = merged.get(delta.index)
        if before is None:
            merged[delta.index] = delta
            continue
        logprobs = None if before.logprobs is None else before.logprobs + (delta.logprobs or ())
        merged[delta.index] = Delta(delta.index, before.text + delta.text, logprobs, delta.finish_reason)
    return list(merged.values())


@dataclass(frozen=True)
class Stream:
    """What every chunk of one streamed answer shares."""

    id: str
    created: int
    model: str
    chat: bool

    @classmethod
    def start(cls, served_name: str, chat: bool) -> Stream:
        return cls(response_id(chat), int(time.time()), served_name, chat)

    def chunk(self, choices: list[dict], **extra) -> dict:
        return {"id": self.id, "object": "chat.completion.chunk" if self.chat else "text_completion",
                "created": self.created, "model": self.model, "choices": choices, **extra}

    def delta_chunk(self, delta: Delta, first: bool) -> dict:
        """One piece of one choice. A chat choice's first piece names the role, as OpenAI's do."""
        if self.chat:
            content = {"role": "assistant", "content": delta.text} if first else {"content": delta.text}
            if delta.finish_reason is not None and not delta.text and not first:
                content = {}
            choice = {"index": delta.index, "delta": content, "logprobs": chat_logprobs(delta.logprobs),
                      "finish_reason": delta.finish_reason}
        else:
            choice = {"index": delta.index, "text": delta.text, "logprobs": completion_logprobs(delta.logprobs),
                      "finish_reason": delta.finish_reason}
        return self.chunk([choice])

    def usage_chunk(self, generations: list[Generation], n: int) -> dict:
        """The last chunk when stream_options.include_usage: no choices, the token counts."""
        return self.chunk([], usage=usage(generations, n))


def server_sent_event(data: dict | str) -> bytes:
    """One event of a text/event-stream: a JSON object, or the closing `[DONE]`."""
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n".encode("utf-8")


def models_response(served_name: str) -> dict:
    return {"object": "list", "data": [{"id": served_name, "object": "model", "created": 0, "owned_by": "reftune"}]}


def error_body(message: str, status: int) -> dict:
    kind = "not_found_error" if status == 404 else "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "code": status}}
