"""NATS JetStream sink and consumer: one message per block, subject ``blockfeed.blocks.<number>``.

Exactly once with redundant publishers: every publish carries the header
``Nats-Expected-Last-Subject-Sequence: 0`` ("only if this subject has no message yet"). The
first publisher of a block wins; the server refuses the same subject from anyone else (error
10071, *wrong last sequence*), and the sink then reads the stored message back and compares
hashes: the same block counts as a duplicate, a different hash is refused loudly.

Speed: a batch is published pipelined (every publish of the batch in flight on one inbox
subscription, acks taken in order), so catch-up is not bound by one round trip per block.
Should one publish in a batch fail while later ones succeeded, the stream holds a later block
before an earlier one for a moment; the sink resends from the first unconfirmed block (the
later ones come back as duplicates), and :class:`NatsConsumer` restores number order (it reads
the missing number by subject), so readers never see the disorder.

``blockfeed consume nats://...`` reads with :class:`NatsConsumer`: in number order, each block
checked against its header hash and its parent, from a given number or the newest.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import nats
import nats.errors as nats_errors
import nats.js.errors as js_errors
from nats.js import api as js_api

from blockfeed.codec import block_hash, header_from_json
from blockfeed.contents.wire import contents_of, with_contents
from blockfeed.errors import ConfigError, MalformedFrame, VerificationError
from blockfeed.sinks.base import CursorSink, SinkRefused, block_row
from blockfeed.types import Block, Source
from blockfeed.util.redact import redact_url

NatsError = nats_errors.Error
"""nats-py's base error (connection, timeout, JetStream API)."""

logger = logging.getLogger("blockfeed.sinks.nats")

DEFAULT_STREAM = "BLOCKFEED"
DEFAULT_SUBJECT_PREFIX = "blockfeed.blocks"
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_ACK_TIMEOUT_S = 10.0
WRONG_LAST_SEQUENCE = 10071
"""JetStream's error code when ``Nats-Expected-Last-Subject-Sequence`` does not hold."""
EXPECT_NEW_SUBJECT = {"Nats-Expected-Last-Subject-Sequence": "0"}
SCHEMES = ("nats", "tls")
GAP_PATIENCE_S = 10.0
"""How long the consumer waits for a number missing below a newer one before calling it a gap."""
SETUP_PATIENCE_S = 30.0
"""How long the consumer retries its start while JetStream answers with timeouts (elections)."""


def split_servers(url: str) -> list[str]:
    """``nats://a:4222,nats://b:4222`` (or ``nats://a:4222,b:4222``) -> one URL per server."""
    if not isinstance(url, str) or not url:
        raise ConfigError("a NATS URL is required, e.g. nats://127.0.0.1:4222")
    servers = []
    scheme = url.split("://", 1)[0] if "://" in url else ""
    for part in url.split(","):
        part = part.strip()
        if part and "://" not in part:
            part = f"{scheme}://{part}"
        try:
            parts = urlsplit(part)
            _ = parts.port
        except ValueError:
            raise ConfigError(f"not a NATS URL: {redact_url(part)}") from None
        if parts.scheme not in SCHEMES or not parts.hostname:
            raise ConfigError(f"not a NATS URL: {redact_url(part)} (expected nats://host:port)")
        servers.append(part)
    return servers


def redact_servers(url: str) -> str:
    return ",".join(redact_url(s) for s in url.split(","))


def _payload(block: Block) -> bytes:
    row = block_row(block)
    row["source"] = str(block.source)
    if block.header is not None:
        row["header"] = block.header.to_json()
    contents = contents_of(block)
    if contents is not None:
        row["contents"] = contents
    return json.dumps(row, separators=(",", ":")).encode()


def block_from_payload(data: bytes, subject: str) -> Block:
    """Decode and verify one message; :class:`MalformedFrame` or :class:`VerificationError`."""
    try:
        row = json.loads(data)
        number, hash_, parent = int(row["number"]), str(row["hash"]), str(row["parent_hash"])
        received_at = float(row["received_at"])
        header_json = row.get("header")
        contents = row.get("contents")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MalformedFrame(
            f"NATS message on {subject!r} is not a blockfeed block: {exc}"
        ) from None
    if not subject.endswith(f".{number}"):
        raise VerificationError(f"NATS message on {subject!r} holds block {number}")
    header = None
    if header_json is not None:
        header = header_from_json(header_json)
        if block_hash(header) != hash_:
            raise VerificationError(
                f"block {number} on {subject!r}: header does not hash to {hash_}"
            )
    block = Block(
        number=number,
        hash=hash_,
        parent_hash=parent,
        source=Source.WS,
        received_at=received_at,
        header=header,
        late=True,
    )
    try:
        return with_contents(block, contents)
    except ValueError as exc:
        raise MalformedFrame(f"NATS message on {subject!r}: {exc}") from None


async def _connect(servers: list[str], timeout_s: float) -> Any:
    async def quiet(_exc: Exception) -> None:
        return None

    return await nats.connect(
        servers=servers,
        connect_timeout=max(1, round(timeout_s)),
        allow_reconnect=True,
        max_reconnect_attempts=3,
        reconnect_time_wait=0.2,
        error_cb=quiet,
    )


class NatsSink(CursorSink):
    """Publishes every block to JetStream, one subject per block, once across publishers.

    * ``stream``: the stream's name (created with subjects ``<prefix>.>`` if absent).
    * ``replicas``: replicas when this sink creates the stream (3 on a three-node cluster).
    """

    kind = "nats"

    def __init__(
        self,
        url: str,
        *,
        stream: str = DEFAULT_STREAM,
        subject_prefix: str = DEFAULT_SUBJECT_PREFIX,
        replicas: int = 1,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        ack_timeout_s: float = DEFAULT_ACK_TIMEOUT_S,
        **options: Any,
    ) -> None:
        self._servers = split_servers(url)
        super().__init__(url, **options)
        self.url = redact_servers(url)
        if not stream or not stream.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(
                f"the NATS stream name must be letters, digits, - or _; got {stream!r}"
            )
        self.stream = stream
        self.prefix = subject_prefix
        self._replicas = replicas
        self._connect_timeout_s = connect_timeout_s
        self._ack_timeout_s = ack_timeout_s
        self._nc: Any = None
        self._js: Any = None
        self._inbox: str | None = None
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._counts["duplicates"] = 0
        self._transient = (
            OSError,
            TimeoutError,
            nats_errors.Error,
            js_errors.NoStreamResponseError,
            js_errors.ServiceUnavailableError,
        )

    def subject(self, number: int) -> str:
        return f"{self.prefix}.{number}"

    async def _connect(self) -> int | None:
        self._nc = await _connect(self._servers, self._connect_timeout_s)
        self._js = self._nc.jetstream(timeout=self._ack_timeout_s)
        info = await self._ensure_stream()
        last_seq = info.state.last_seq if info.state.messages else 0
        if not last_seq:
            return None
        if self._cursor is not None:
            return self._cursor  # resend from what this sink itself confirmed
        top_msg = await self._js.get_msg(self.stream, seq=last_seq)
        top = int(str(top_msg.subject).rsplit(".", 1)[1])
        return await self._first_hole_below(top) - 1

    async def _ensure_stream(self) -> Any:
        try:
            return await self._js.stream_info(self.stream)
        except js_errors.NotFoundError:
            pass
        config = js_api.StreamConfig(
            name=self.stream,
            subjects=[f"{self.prefix}.>"],
            storage=js_api.StorageType.FILE,
            num_replicas=self._replicas,
            max_msgs_per_subject=1,
        )
        try:
            return await self._js.add_stream(config)
        except js_errors.BadRequestError:
            return await self._js.stream_info(self.stream)  # another publisher created it

    async def _first_hole_below(self, top: int) -> int:
        """After a crash mid-batch, a block below the stream's top may be missing: find it."""
        low = max(0, top - self._batch_size + 1)

        async def has(number: int) -> bool:
            try:
                await self._js.get_last_msg(self.stream, self.subject(number))
            except js_errors.NotFoundError:
                return False
            return True

        present = await asyncio.gather(*(has(n) for n in range(low, top + 1)))
        numbers = range(low, top + 1)
        first = next(n for n, ok in zip(numbers, present, strict=True) if ok)  # top is present
        holes = [n for n, ok in zip(numbers, present, strict=True) if not ok and n > first]
        return holes[0] if holes else top + 1

    async def _write(self, blocks: list[Block]) -> None:
        # Every publish of the batch goes out at once, each with its own reply subject under
        # one inbox subscription; the acks are then taken in order, so the cursor only moves
        # over blocks confirmed with everything before them. (nats-py's publish_async is not
        # used: its reply handler loses error replies such as "wrong last sequence".)
        await self._check_parent(blocks[0])
        futures = await self._publish_batch(blocks)
        try:
            async with asyncio.timeout(self._ack_timeout_s):
                for index, (block, future) in enumerate(zip(blocks, futures, strict=True)):
                    reply = await future
                    error = reply.get("error")
                    if error is not None:
                        if error.get("err_code") != WRONG_LAST_SEQUENCE:
                            raise SinkRefused(
                                f"NATS stream {self.stream} refused block {block.number}: "
                                f"{error.get('description') or error}"
                            )
                        await self._check_duplicate(block)
                    if index % 64 == 63 or index == len(blocks) - 1:
                        self._written(blocks[: index + 1])
        finally:
            self._acks.clear()

    async def _publish_batch(self, blocks: list[Block]) -> list[asyncio.Future[dict[str, Any]]]:
        if self._inbox is None:
            self._inbox = self._nc.new_inbox()
            await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_ack)
        loop = asyncio.get_running_loop()
        futures = []
        for block in blocks:
            token = f"{self._inbox}.{block.number}"
            future: asyncio.Future[dict[str, Any]] = loop.create_future()
            self._acks[token] = future
            futures.append(future)
            await self._nc.publish(
                self.subject(block.number),
                _payload(block),
                reply=token,
                headers=dict(EXPECT_NEW_SUBJECT),
            )
        await self._nc.flush(timeout=self._ack_timeout_s)
        return futures

    async def _on_ack(self, msg: Any) -> None:
        """A JetStream reply to one publish: resolve its future with the decoded JSON."""
        future = self._acks.pop(msg.subject, None)
        if future is None or future.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            future.set_exception(js_errors.NoStreamResponseError())
            return
        try:
            future.set_result(json.loads(msg.data))
        except ValueError as exc:
            future.set_exception(MalformedFrame(f"NATS replied with non-JSON: {exc}"))

    async def _check_parent(self, block: Block) -> None:
        """The stream's block before ``block`` (if any) must be its parent."""
        if block.number == 0:
            return
        try:
            stored = await self._js.get_last_msg(self.stream, self.subject(block.number - 1))
        except js_errors.NotFoundError:
            return
        before = json.loads(stored.data).get("hash")
        if before != block.parent_hash:
            raise SinkRefused(
                f"NATS stream {self.stream}: block {block.number} has parent {block.parent_hash}, "
                f"but the stream's block {block.number - 1} is {before}: another chain is "
                "published into it; not publishing"
            )

    async def _check_duplicate(self, block: Block) -> None:
        stored = await self._js.get_last_msg(self.stream, self.subject(block.number))
        theirs = json.loads(stored.data).get("hash")
        if theirs != block.hash:
            raise SinkRefused(
                f"NATS stream {self.stream} already has block {block.number} with hash {theirs}, "
                f"ours is {block.hash}: another chain is published into it; not publishing"
            )
        self._counts["duplicates"] += 1

    async def _ping(self) -> None:
        await self._nc.flush(timeout=self._ack_timeout_s)

    async def _disconnect(self) -> None:
        nc, self._nc, self._js, self._inbox = self._nc, None, None, None
        self._acks.clear()
        if nc is not None:
            try:
                await asyncio.wait_for(nc.close(), 5.0)
            except Exception:
                logger.debug("closing the NATS connection failed", exc_info=True)

    def status(self) -> dict[str, Any]:
        out = super().status()
        out["stream"] = self.stream
        out["duplicates"] = self._counts["duplicates"]
        return out


class NatsConsumer:
    """Reads blocks from the stream in number order, verified, from ``after + 1`` (or newest).

    ``async for block in NatsConsumer(url, after=N)``. Every block is checked against its
    header hash and its parent; a number missing from the stream for ``GAP_PATIENCE_S`` raises
    :class:`VerificationError` (``allow_gaps=True`` skips it with a warning).
    """

    def __init__(
        self,
        url: str,
        *,
        stream: str = DEFAULT_STREAM,
        subject_prefix: str = DEFAULT_SUBJECT_PREFIX,
        after: int | None = None,
        allow_gaps: bool = False,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        gap_patience_s: float = GAP_PATIENCE_S,
        setup_patience_s: float = SETUP_PATIENCE_S,
    ) -> None:
        self._servers = split_servers(url)
        self.url = redact_servers(url)
        self.stream = stream
        self.prefix = subject_prefix
        self._after = after
        self._allow_gaps = allow_gaps
        self._connect_timeout_s = connect_timeout_s
        self._gap_patience_s = gap_patience_s
        self._setup_patience_s = setup_patience_s
        self.last_number: int | None = None
        self._last_hash: str | None = None
        self._gaps = 0

    def status(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "stream": self.stream,
            "last_number": self.last_number,
            "gaps": self._gaps,
        }

    async def __aiter__(self) -> AsyncIterator[Block]:
        nc = await _connect(self._servers, self._connect_timeout_s)
        js = nc.jetstream()
        try:
            deadline = asyncio.get_running_loop().time() + self._setup_patience_s
            while True:  # a cluster electing a new leader answers slowly for a few seconds
                try:
                    start_seq, expected = await self._start(js)
                    break
                except (nats_errors.TimeoutError, js_errors.ServiceUnavailableError):
                    if asyncio.get_running_loop().time() > deadline:
                        raise
                    await asyncio.sleep(0.2)
            config = (
                js_api.ConsumerConfig(
                    deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq
                )
                if start_seq
                else js_api.ConsumerConfig(deliver_policy=js_api.DeliverPolicy.NEW)
            )
            while True:
                try:
                    sub = await js.subscribe(
                        f"{self.prefix}.>", stream=self.stream, ordered_consumer=True, config=config
                    )
                    break
                except (nats_errors.TimeoutError, js_errors.ServiceUnavailableError):
                    if asyncio.get_running_loop().time() > deadline:
                        raise
                    await asyncio.sleep(0.2)
            try:
                async for msg in sub.messages:
                    block = block_from_payload(msg.data, msg.subject)
                    if expected is not None and block.number < expected:
                        continue  # already yielded, read by subject when it was missing
                    if expected is not None and block.number > expected:
                        for missing in range(expected, block.number):
                            found = await self._by_subject(js, missing)
                            if found is not None:
                                yield self._accept(found)
                    yield self._accept(block)
                    expected = block.number + 1
            finally:
                await sub.unsubscribe()
        finally:
            await nc.close()

    async def _start(self, js: Any) -> tuple[int | None, int | None]:
        """The stream sequence to start reading at, and the block number expected first."""
        if self._after is None:
            return None, None
        if self._after < 0:
            return 1, None  # from the stream's first message
        first = self._after + 1
        try:
            msg = await js.get_last_msg(self.stream, f"{self.prefix}.{first}")
        except js_errors.NotFoundError:
            info = await js.stream_info(self.stream)
            return info.state.last_seq + 1, first
        if self._after >= 0:
            try:
                prev = await js.get_last_msg(self.stream, f"{self.prefix}.{self._after}")
                self._last_hash = block_from_payload(prev.data, str(prev.subject)).hash
                self.last_number = self._after
            except js_errors.NotFoundError:
                pass
        return int(msg.seq), first

    async def _by_subject(self, js: Any, number: int) -> Block | None:
        """Block ``number`` read directly by subject, waiting up to ``gap_patience_s`` for it."""
        deadline = asyncio.get_running_loop().time() + self._gap_patience_s
        while True:
            try:
                msg = await js.get_last_msg(self.stream, f"{self.prefix}.{number}")
                return block_from_payload(msg.data, str(msg.subject))
            except js_errors.NotFoundError:
                if asyncio.get_running_loop().time() >= deadline:
                    break
                await asyncio.sleep(0.2)
        if not self._allow_gaps:
            raise VerificationError(
                f"NATS stream {self.stream} has no block {number} (purged, or never published); "
                f"resume after it with --from {number + 1}, or allow gaps"
            )
        self._gaps += 1
        logger.warning("NATS stream %s has no block %d; skipping it", self.stream, number)
        self._last_hash = None
        return None

    def _accept(self, block: Block) -> Block:
        if self._last_hash is not None and self.last_number == block.number - 1:
            if block.parent_hash != self._last_hash:
                raise VerificationError(
                    f"block {block.number} has parent {block.parent_hash}, but block "
                    f"{block.number - 1} is {self._last_hash}: the stream mixes two chains"
                )
        self.last_number = block.number
        self._last_hash = block.hash
        return block
