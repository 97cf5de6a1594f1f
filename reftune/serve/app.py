"""`reftune serve MODEL`: an OpenAI-compatible HTTP server (Starlette routes on uvicorn) over any model
reftune loads. Each route parses the body (reftune.serve.protocol), hands the request to the Batcher
and returns JSON; a bad request is a 400 (404 for an unknown model or path) with a JSON error, and
nothing a client sends stops the server."""
from __future__ import annotations

import asyncio
import json

from reftune.listening import bind, is_loopback
from reftune.serve.protocol import (BadRequest, chat_request, completion_request, completion_response, error_body,
                                    models_response)


def build_app(batcher, served_name: str, max_tokens_limit: int):
    """The Starlette app; `batcher` is a reftune.serve.batcher.Batcher (anything with submit())."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def error(message: str, status: int) -> JSONResponse:
        return JSONResponse(error_body(message, status), status_code=status)

    async def generate(request, parse, chat: bool) -> JSONResponse:
        try:
            body = json.loads(await request.body())
            generation_request = parse(body, served_name, max_tokens_limit)
            generations = await asyncio.wrap_future(batcher.submit(generation_request))
        except json.JSONDecodeError as exc:
            return error(f"the body is not valid JSON ({exc.msg} at position {exc.pos})", 400)
        except UnicodeDecodeError:
            return error("the body is not UTF-8 text", 400)
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
    served_name = config.served_name or config.model
    listener = bind(config.host, config.port)  # a port in use is refused before the slow imports and loading
    try:
        import uvicorn

        from reftune.models import load_policy
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
    app = build_app(batcher, served_name, config.max_tokens_limit)
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


def announcing_server(uvicorn, config, announcement: str):
    """A uvicorn server that prints `announcement` once it is up, with its Ctrl-C handling in place: a
    client (or a test) that waits for the URL can then rely on it."""

    class AnnouncingServer(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            print(announcement, flush=True)

    return AnnouncingServer(config)






def tiny_tokenizer_texts(config) -> list[str] | None:
    """For `tiny` only: the texts its in-memory tokenizer is fitted to (a task's prompts and targets)."""
    if config.model != "tiny":
        return None
    from reftune.tasks import get_task

    task = get_task(config.tiny_task)
    return [task.prompt(e) + task.target(e) for e in task.load("train")[:200]]
