"""The ``GET /stream`` response: replay from the window, then live, with no gap and no duplicate.

Order of operations (the whole exactly-once argument for SSE):

1. register with the hub FIRST, so every block published from now on is queued for us;
2. replay ``start .. head`` from the window (ring, then store);
3. drain the live queue, skipping numbers already sent and filling any hole from the window.

A block published during step 2 is both replayed and queued; step 3 drops the second copy because
its number is below ``next_number``. Each frame carries ``id: <number>``, so a browser that
reconnects sends ``Last-Event-ID`` and resumes at the next block.

Bounds: replay goes in batches of at most ``REPLAY_BATCH`` frames and ``REPLAY_BATCH_BYTES``, each
granted by the hub's :class:`~blockfeed.gateway.limits.ReplayPacer` and followed by a yield, so
no number of replaying clients holds the event loop; the next batch is prepared only once the
previous one is in the transport below its high-water mark, so a client's buffer holds at most
about one batch plus that mark. A write that cannot proceed for ``hub.write_timeout_s`` (the
client stopped reading) is found by the hub's watchdog, which drops the client; the response
then aborts its connection, freeing the descriptor.

The response is a small ASGI app rather than a generator so it can be stopped from outside: when
the client disconnects, or the hub drops it for being slow while a write is blocked on a full
socket, the writer task is cancelled at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from blockfeed.gateway.hub import EVENT_FRAME, SseClient, SseHub
from blockfeed.gateway.protocol import abort_handle
from blockfeed.gateway.window import BlockWindow, WindowUnavailable

log = logging.getLogger(__name__)

RETRY_MS = 2000
"""Browsers wait this long before reconnecting (the ``retry:`` field)."""
REPLAY_BATCH = 64
"""Blocks per write while replaying (keeps each write moderate, lets live events queue)."""
REPLAY_BATCH_BYTES = 64 * 1024
"""Bytes per replay write at most (blocks are ~0.6 KiB; a bound in case they grow)."""
DROP_GRACE_S = 1.0
"""After a drop, how long to try ending the response politely before closing the socket."""
SSE_HEADERS = {
    "cache-control": "no-cache",
    "x-accel-buffering": "no",  # tell nginx-style proxies not to buffer the stream
    "connection": "close",  # when a stream ends (drop, gap), free the socket at once
}


class StreamGap(Exception):
    """A block the client needs is in neither the ring nor the store; end the stream."""


class EventStreamResponse(Response):
    """Server-Sent Events for one client of the hub (see the module docstring)."""

    media_type = "text/event-stream"

    def __init__(
        self,
        *,
        hub: SseHub,
        client: SseClient,
        window: BlockWindow,
        start_number: int | None,
        first_frames: bytes,
        frame_filter: Callable[[int, bytes], bytes | None] | None = None,
    ) -> None:
        super().__init__(content=None, headers=SSE_HEADERS, media_type=self.media_type)
        # A stream has no length: drop the "content-length: 0" Response adds for an empty body.
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self._hub = hub
        self._client = client
        self._window = window
        self._next = start_number
        self._first_frames = first_frames
        self._loop_time = asyncio.get_running_loop().time
        self._filter = frame_filter
        """``?events=``: rewrites (or leaves out, None) each block frame for this client."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tasks: list[asyncio.Task[Any]] = []
        abort = abort_handle(scope)
        try:
            await send(
                {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
            )
            writer = asyncio.create_task(self._pump(send))
            disconnect = asyncio.create_task(_wait_disconnect(receive))
            tasks = [writer, disconnect]
            # A drop cancels the writer even while a write waits on a full socket.
            self._client.on_drop = writer.cancel
            if self._client.dropped:
                writer.cancel()
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if writer in done and not writer.cancelled() and writer.exception() is not None:
                exc = writer.exception()
                if isinstance(exc, StreamGap | WindowUnavailable):
                    log.warning("SSE stream ended: %s", exc)  # the client resumes from its id
                elif not isinstance(exc, OSError):
                    log.error("SSE stream failed: %s", type(exc).__name__, exc_info=exc)
            if disconnect not in done:
                await self._finish(send, abort, polite=not self._client.stalled)
        finally:
            for task in tasks:  # also when we are cancelled ourselves (server shutdown)
                task.cancel()
            self._client.on_drop = None
            self._hub.unregister(self._client)

    async def _finish(self, send: Send, abort: Any, *, polite: bool) -> None:
        """End the chunked body; a client that reads nothing at all gets its socket aborted.

        Closing (what the server does after an unfinished response) waits until the buffered
        bytes are read, which a stalled client never does: abort frees the descriptor now.
        """
        if polite:
            with contextlib.suppress(TimeoutError, OSError):
                async with asyncio.timeout(DROP_GRACE_S):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
        if abort is not None:
            abort()

    async def _write(self, send: Send, body: bytes) -> None:
        client = self._client
        client.writing_since = self._loop_time()  # the hub's watchdog reads it
        try:
            await send({"type": "http.response.body", "body": body, "more_body": True})
        finally:
            client.writing_since = None

    async def _pump(self, send: Send) -> None:
        await self._write(send, f"retry: {RETRY_MS}\n\n".encode() + self._first_frames)
        if self._next is not None:
            await self._replay(send)
        while not self._client.dropped:
            body = self._live_body(await self._client.next_batch())
            if body:
                await self._write(send, body)

    async def _replay(self, send: Send) -> None:
        """Send ``next .. head`` from the window in paced, bounded batches (each block frame as
        this client wants it: see :meth:`_shaped`)."""
        assert self._next is not None
        head = self._window_head()
        while self._next <= head:
            await self._hub.pacer.take(REPLAY_BATCH)
            frames = self._window.frames(self._next, min(REPLAY_BATCH, head - self._next + 1))
            if not frames:
                raise StreamGap(f"block {self._next} is no longer available")
            size = 0
            taken = 0
            batch: list[bytes] = []
            for block, frame in frames:
                if taken and size + len(frame) > REPLAY_BATCH_BYTES:
                    break
                taken += 1
                size += len(frame)
                batch.extend(self._shaped(((block.number, frame),)))
            if batch:
                await self._write(send, b"".join(batch))
            self._next = frames[taken - 1][0].number + 1
            self._client.sent += len(batch)
            await asyncio.sleep(0)  # a write that did not block did not yield

    def _shaped(self, frames: Iterable[tuple[int, bytes]]) -> list[bytes]:
        """Block frames as this client wants them (all of them, unless it filters events)."""
        if self._filter is None:
            return [frame for _, frame in frames]
        return [f for f in (self._filter(n, frame) for n, frame in frames) if f]

    def _window_head(self) -> int:
        bounds = self._window.bounds()
        head = bounds[1] if bounds is not None else -1
        return max(head, self._hub.head if self._hub.head is not None else -1)

    def _live_body(self, batch: list[tuple[int, bytes]]) -> bytes:
        """Frames to send for a batch from the queue: duplicates skipped, holes filled."""
        out: list[bytes] = []
        for number, frame in batch:
            if number == EVENT_FRAME:
                out.append(frame)
                continue
            if self._next is None:
                self._next = number
            if number < self._next:
                continue
            if number > self._next:
                missing = number - self._next
                filled = self._window.frames(self._next, missing)
                if len(filled) != missing:
                    raise StreamGap(f"blocks {self._next}..{number - 1} are not available")
                out.extend(self._shaped((b.number, f) for b, f in filled))
            out.extend(self._shaped([(number, frame)]))
            self._next = number + 1
        self._client.sent += len(out)
        return b"".join(out)


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
