"""`reftune serve MODEL`: an OpenAI-compatible HTTP server (Starlette routes on uvicorn) over any model
reftune loads. Each route reads the body (at most max_body_bytes), parses it (reftune.serve.protocol)
and hands the request to the Batcher on a worker thread (tokenising a long prompt must not hold up the
other routes), then returns JSON, or with `stream: true` server-sent events as the text is generated
(reftune.serve.streaming); a bad request is a 400 (404 for an unknown model or path) with a JSON error,
sent before any event, and nothing a client sends stops the server."""
from __future__ import annotations

import asyncio
from pathlib import Path

from reftune.hub import check_model_path
from reftune.listening import bind, is_loopback
from reftune.serve.protocol import (DEFAULT_MAX_ROWS, BadRequest, Stream, chat_request, completion_request,
                                    completion_response, error_body, models_response, parse_body)

DEFAULT_MAX_BODY_BYTES = 1_000_000  # far more text than any model's context: `reftune serve --max-body-bytes`
DRAIN_FACTOR = 16  # how much of a body over the limit is read (and dropped) so that its sender gets the 400


def build_app(batcher, served_name: str, max_tokens_limit: int, max_rows: int = DEFAULT_MAX_ROWS,
              max_body_bytes: int = DEFAULT_MAX_BODY_BYTES):
    """The Starlette app; `batcher` is a reftune.serve.batcher.Batcher (anything with submit())."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from reftune.serve.streaming import EventStream, Pieces, events

    def error(message: str, status: int) -> JSONResponse:
        return JSONResponse(error_body(message, status), status_code=status)

    def submit(raw: bytes, parse, pieces: Pieces):
        """On a worker thread: the parsed request and the future of its generations (a streamed one
        hands its pieces to `pieces` as they come)."""
        generation_request = parse(parse_body(raw), served_name, max_tokens_limit, max_rows)
        return generation_request, batcher.submit(generation_request, pieces.put if generation_request.stream else None)

    async def generate(request, parse, chat: bool):
        try:
            raw = await read_body(request, max_body_bytes)
            pieces = Pieces()
            generation_request, future = await run_in_threadpool(submit, raw, parse, pieces)
            if generation_request.stream:  # every check passed: the events start
                pieces.follow(future)
                return EventStream(events(Stream.start(served_name, chat), pieces, future, generation_request),
                                   on_close=future.cancel)
            generations = await asyncio.wrap_future(future)
        except BadRequest as exc:
            return error(str(exc), exc.status)
        except Exception as exc:  # the model failed on this batch; the server goes on
            return error(f"generation failed: {type(exc).__name__}: {str(exc)[:200]}", 500)
        return JSONResponse(completion_response(served_name, generations, chat, generation_request.n))

    async def completions(request):
        return await generate(request, completion_request, chat=False)

    async def chat_completions(request):
        return await generate(request, chat_request, chat=True)

    async def models(request):
        return JSONResponse(models_response(served_name))

    async def http_error(request, exc: HTTPException):
        return error(f"{exc.detail}: {request.method} {request.url.path}", exc.status_code)

    routes = [Route("/v1/models", models, methods=["GET"]),
              Route("/v1/completions", completions, methods=["POST"]),
              Route("/v1/chat/completions", chat_completions, methods=["POST"])]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})


def serve(config) -> None:
    """Bind the port (0: a free one), load the model, print the URL, serve until Ctrl-C."""
    served_name = config.served_name or default_served_name(config.model)
    check_model_path(config.model)  # a missing folder, or a run's folder for its model, before the slow imports
    listener = bind(config.host, config.port)  # a port in use is refused before the slow imports and loading
    try:
        import uvicorn

        from reftune.model.loading import load_policy
        from reftune.serve.batcher import Batcher  # torch: loaded once the port is ours

        policy = load_policy(config.model, tokenizer_texts=tiny_tokenizer_texts(config), seed=config.seed)
    except KeyboardInterrupt:
        listener.close()
        print("serve: stopped while loading the model", flush=True)
        return
    except BaseException:
        listener.close()
        raise
    host, port = listener.getsockname()[:2]
    batcher = Batcher(policy, config.max_batch, config.seed)
    app = build_app(batcher, served_name, config.max_tokens_limit, config.max_request_rows, config.max_body_bytes)
    if not is_loopback(config.host):
        print(f"serve: warning: listening on {config.host}, reachable from other machines; the server has no "
              f"authentication", flush=True)
    try:
        server = announcing_server(uvicorn, uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5),
                                   f"serve: {served_name} at http://{host}:{port}/v1 (Ctrl-C stops)")
        server.run(sockets=[listener])
    except KeyboardInterrupt:  # before uvicorn took over Ctrl-C, or uvicorn re-raising it once shut down
        pass
    finally:
        batcher.close()
        listener.close()
    print("serve: stopped", flush=True)


async def read_body(request, limit: int) -> bytes:
    """The body, refused when it passes `limit` bytes: the server never holds more than that. The rest
    is read and dropped, up to DRAIN_FACTOR times the limit, since a client still sending when the
    answer comes sees a reset connection, not the 400 saying why; beyond that the connection is cut."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > DRAIN_FACTOR * limit:
            break
    if size > limit:
        raise BadRequest(f"the body is {'over ' if size > DRAIN_FACTOR * limit else ''}{size} bytes, more than "
                         f"the {limit} this server takes: send less, or start the server with a higher --max-body-bytes")
    return b"".join(chunks)


def announcing_server(uvicorn, config, announcement: str):
    """A uvicorn server that prints `announcement` once it is up, with its Ctrl-C handling in place: a
    client (or a test) that waits for the URL can then rely on it."""

    class AnnouncingServer(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            print(announcement, flush=True)

    return AnnouncingServer(config)


def default_served_name(model: str) -> str:
    """The name clients ask for when --served-name is not given: a model folder's own name (a client
    should not learn, or have to send, where the model lies on disk), else the name as given (a hub
    id, smollm2-135m, tiny).

    >>> default_served_name("tiny")
    'tiny'
    """
    folder = Path(model).expanduser()
    return folder.resolve().name if folder.is_dir() and folder.resolve().name else model


def tiny_tokenizer_texts(config) -> list[str] | None:
    """For `tiny` only: the texts its in-memory tokenizer is fitted to (a task's prompts and targets)."""
    if config.model != "tiny":
        return None
    from reftune.tasks import get_task

    task = get_task(config.tiny_task)
    return [task.prompt(e) + task.target(e) for e in task.load("train")[:200]]
