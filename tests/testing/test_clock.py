"""VirtualClock: timers jump, threads freeze time, runs are bounded and deterministic."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from blockfeed.testing import (
    VirtualClock,
    VirtualClockStalled,
    VirtualTimeExceeded,
    run_virtual,
    virtual_time,
)


def test_an_hour_of_sleep_is_an_hour_of_virtual_time() -> None:
    """A long sleep moves virtual time by exactly its length."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(3600)
        return loop.time() - start

    assert run_virtual(main()) == pytest.approx(3600.0)


def test_timers_fire_in_order_at_their_virtual_times() -> None:
    """Concurrent sleepers wake in deadline order, each at its own virtual time."""
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        woke.append((name, round(asyncio.get_running_loop().time(), 9)))

    async def main() -> None:
        await asyncio.gather(sleeper("c", 3.0), sleeper("a", 1.0), sleeper("b", 2.5))

    run_virtual(main())
    assert woke == [("a", 1.0), ("b", 2.5), ("c", 3.0)]


def test_timeouts_follow_the_virtual_clock() -> None:
    """asyncio.timeout ends a wait at its virtual deadline."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(7.5):
                await asyncio.Event().wait()
        return loop.time() - start

    assert run_virtual(main()) == pytest.approx(7.5)


def test_thread_work_freezes_virtual_time() -> None:
    """While a to_thread job runs (real time passes), virtual time stands still."""

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        background = asyncio.create_task(asyncio.sleep(1000))
        start = loop.time()
        await asyncio.to_thread(time.sleep, 0.05)
        after_thread = loop.time() - start
        await background
        return after_thread, loop.time() - start

    during, total = run_virtual(main())
    assert during == 0.0
    assert total == pytest.approx(1000.0)


def test_the_virtual_time_limit_ends_a_runaway_run() -> None:
    """A run that would pass limit_s virtual seconds raises VirtualTimeExceeded."""
    with pytest.raises(VirtualTimeExceeded, match="limit of 10 s"):
        VirtualClock(limit_s=10).run(asyncio.sleep(100))


def test_a_deadlock_ends_with_a_clear_error() -> None:
    """Nothing scheduled and nothing happening raises VirtualClockStalled, not a hang."""

    async def main() -> None:
        await asyncio.Event().wait()

    with pytest.raises(VirtualClockStalled, match="deadlock"):
        VirtualClock(stall_real_s=0.2).run(main())


def test_same_script_same_result() -> None:
    """Two runs of one script record identical (virtual time, event) lists."""

    async def script() -> list[tuple[float, int]]:
        loop = asyncio.get_running_loop()
        out: list[tuple[float, int]] = []

        async def worker(i: int) -> None:
            for step in range(5):
                await asyncio.sleep(0.1 * (i + 1) + 0.01 * step)
                out.append((round(loop.time(), 9), i))

        await asyncio.gather(*(worker(i) for i in range(4)))
        return out

    assert run_virtual(script()) == run_virtual(script())


def test_wait_until_reports_elapsed_and_times_out() -> None:
    """wait_until returns the virtual seconds it waited, and names what never happened."""

    async def main() -> float:
        clock = VirtualClock.current()
        flag = {"set": False}
        asyncio.get_running_loop().call_later(2.0, flag.update, {"set": True})
        waited = await clock.wait_until(lambda: flag["set"], within_s=5)
        with pytest.raises(TimeoutError, match="the moon"):
            await clock.wait_until(lambda: False, within_s=1, what="the moon")
        return waited

    assert run_virtual(main()) == pytest.approx(2.0, abs=0.011)


def test_real_loopback_sockets_still_work() -> None:
    """Real I/O is polled every turn: a 127.0.0.1 echo round trip completes."""

    async def main() -> bytes:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.readline())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping\n")
        line = await asyncio.wait_for(reader.readline(), 30)
        writer.close()
        server.close()
        await server.wait_closed()
        return line

    assert run_virtual(main()) == b"ping\n"


def test_current_outside_a_virtual_loop_is_an_error() -> None:
    """VirtualClock.current() refuses to answer on an ordinary loop."""

    async def main() -> None:
        VirtualClock.current()

    with pytest.raises(RuntimeError, match="not running under a VirtualClock"):
        asyncio.run(main())


@virtual_time
async def test_the_decorator_runs_a_test_on_virtual_time(tmp_path: Path) -> None:
    """@virtual_time keeps fixtures working and gives the test a virtual clock."""
    clock = VirtualClock.current()
    await clock.advance(120)
    assert clock.elapsed_s() == pytest.approx(120.0)
    assert tmp_path.name  # a fixture resolved through the decorator


def test_the_decorator_refuses_plain_functions() -> None:
    """@virtual_time on a non-async function is a TypeError, not a silent no-op."""
    with pytest.raises(TypeError):
        virtual_time(lambda: None)  # type: ignore[arg-type]


def test_runs_are_seeded_and_leave_the_global_random_as_it_was() -> None:
    """Jitter drawn from the global random repeats run to run; the caller's state is restored."""
    import random

    async def draw() -> list[float]:
        return [random.random() for _ in range(3)]

    random.seed(123)
    expected_next = random.Random(123).random()
    first, second = run_virtual(draw()), run_virtual(draw())
    assert first == second
    assert random.random() == expected_next
    assert run_virtual(draw(), seed=1) != first


def test_a_wait_shorter_than_a_microsecond_still_moves_time() -> None:
    """A rounding-remainder wait (1e-17 s) cannot spin forever: timers are at least 1 µs out."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 0.001
        turns = 0
        while loop.time() < deadline:  # a retry loop that sleeps "the rest" in tiny steps
            await asyncio.sleep(1e-17)
            turns += 1
        return turns

    assert run_virtual(main()) <= 1000
