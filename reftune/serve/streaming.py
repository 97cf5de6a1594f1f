"""Server-sent events for `stream: true`: the pieces the model's thread hands over become OpenAI's
chunks, then (when asked) a chunk with the token counts, then `data: [DONE]`. A client that goes
away cancels its request's future, which drops it from the queue or stops its sampling call."""
from __future__ import annotations

import asyncio
from concurrent.futures import Future

import anyio
from starlette.responses import StreamingResponse

from reftune.serve.protocol import Delta, GenerationRequest, Stream, error_body, merge_deltas, server_sent_event


class Pieces:
    """The pieces of one streamed request, handed from the model's thread to the event loop."""

    def __init__(self):
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Delta | None] = asyncio.Queue()

    def put(self, delta: Delta | None) -> None:
        """Thread-safe; None says the request is over (its future is resolved)."""
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, delta)
        except RuntimeError:  # the loop has closed (the server is stopping): nobody is listening
            pass

    async def waiting(self) -> list[Delta] | None:
        """The pieces queued so far (at least one; waits for it), or None once the request is over."""
        pieces = [await self.queue.get()]
        while pieces[-1] is not None and not self.queue.empty():
            pieces.append(self.queue.get_nowait())
        if pieces[-1] is None:
            if len(pieces) == 1:
                return None
            self.queue.put_nowait(None)  # the end came with the last pieces: they go first
            pieces.pop()
        return pieces

    def follow(self, future: Future) -> None:
        """The end of the pieces once the future resolves: after every piece, which the model's thread
        put before it resolved the future."""
        future.add_done_callback(lambda _: self.put(None))


async def events(stream: Stream, pieces: Pieces, future: Future, request: GenerationRequest):
    """The event stream's bytes. A failure after the first event can no longer change the status, so
    it becomes an error event (as vLLM sends one) before [DONE]."""
    opened: set[int] = set()
    while (waiting := await pieces.waiting()) is not None:
        events = []
        for delta in merge_deltas(waiting):
            events.append(server_sent_event(stream.delta_chunk(delta, first=delta.index not in opened)))
            opened.add(delta.index)
        yield b"".join(events)
    try:
        generations = future.result()
    except Exception as exc:
        yield server_sent_event(error_body(f"generation failed: {type(exc).__name__}: {str(exc)[:200]}", 500))
    else:
        if request.include_usage:
            yield server_sent_event(stream.usage_chunk(generations, request.n))
    yield server_sent_event("[DONE]")


class EventStream(StreamingResponse):
    """A text/event-stream response that notices a client going away while it waits for the model (not
    only when a write fails, as Starlette's does under ASGI 2.4), and runs `on_close` however it ends."""

    media_type = "text/event-stream"

    def __init__(self, content, on_close):
        super().__init__(content, headers={"cache-control": "no-cache", "x-accel-buffering": "no"})
        self.on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            async with anyio.create_task_group() as group:
                async def stream_then_stop() -> None:
                    try:
                        await self.stream_response(send)
                    except OSError:  # the client went away during a write
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(stream_then_stop)
                await self.listen_for_disconnect(receive)
                group.cancel_scope.cancel()
        finally:
            self.on_close()
