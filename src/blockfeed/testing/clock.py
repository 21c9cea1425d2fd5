"""A virtual clock for asyncio: timers fire in order, at once, without waiting in real time.

:class:`VirtualClock` runs a coroutine on an event loop whose ``time()`` is virtual. Whenever
the loop would block waiting for its next timer and nothing is ready, it jumps virtual time to
that timer instead of sleeping. So ``await asyncio.sleep(3600)`` takes microseconds, every
``asyncio.timeout`` and ``wait_for`` follows the virtual clock, and a script of (time, input)
plays the same way on a loaded machine as on an idle one.

Four rules keep it honest:

* **Real I/O first.** Each turn polls the real selector with timeout 0, so sockets and
  ``call_soon_threadsafe`` still work; only an idle loop moves virtual time.
* **Threads freeze virtual time.** While work sent to a thread (``asyncio.to_thread``,
  ``run_in_executor``; blockfeed's store uses them) is running, the loop waits for it in real
  time and virtual time stands still, so a slow disk never looks like a slow chain.
* **Seeded.** Code that draws jitter from Python's global ``random`` (blockfeed's backoff does)
  gets the same draws each run: ``run`` seeds it with ``seed`` and puts the previous state
  back afterwards (``seed=None`` leaves it alone).
* **Bounded.** Virtual time may not pass ``limit_s`` (a broken test ends with
  :class:`VirtualTimeExceeded` instead of spinning forever), and a loop with nothing scheduled
  at all (a deadlock: every task waits on something nobody will set) ends with
  :class:`VirtualClockStalled` after ``stall_real_s`` real seconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import random
import selectors
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

DEFAULT_LIMIT_S = 7 * 24 * 3600.0
"""Virtual seconds a run may last before it is declared broken (a week: far beyond any test)."""
DEFAULT_STALL_REAL_S = 10.0
"""Real seconds an idle loop with no timer waits for outside events before giving up."""
THREAD_WAIT_REAL_S = 1.0
"""Real seconds per wait on a running thread (the wait ends at once when the thread is done)."""
DEFAULT_SEED = 0
"""The global ``random`` seed of a run, so backoff jitter repeats (see the module docstring)."""
MIN_DELAY_S = 1e-6
"""The shortest positive timer (see ``_VirtualLoop.call_later``)."""
SNAP_S = 1e-7
"""A jump that ends this close to the next timer lands exactly on it."""
DEFAULT_POLL_S = 0.01
"""Virtual seconds between checks in :meth:`VirtualClock.wait_until`."""

T = TypeVar("T")


class VirtualTimeExceeded(RuntimeError):
    """A run under the virtual clock went past its ``limit_s`` of virtual time."""


class VirtualClockStalled(RuntimeError):
    """Nothing was scheduled and nothing happened: every task waits for something that never
    comes (a deadlock), so virtual time has nowhere to go."""


class _VirtualSelector(selectors.DefaultSelector):
    """The real selector, except that an idle wait for a timer moves virtual time instead."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self._clock = clock
        self.next_timer: Callable[[], float | None] = lambda: None
        """The loop's earliest timer (set by the loop): time jumps exactly onto it."""

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        clock = self._clock
        if clock.threads_running:
            return super().select(THREAD_WAIT_REAL_S)
        if timeout is None:
            ready = super().select(clock.stall_real_s)
            if not ready and not clock.threads_running:
                raise VirtualClockStalled(
                    f"nothing scheduled and nothing happened for {clock.stall_real_s:g} real "
                    f"seconds at virtual time {clock.time():.3f}: a deadlock?"
                )
            return ready
        target = clock.time() + timeout
        head = self.next_timer()
        if head is not None and abs(head - target) < SNAP_S:
            target = head  # land exactly on the timer: no float drift from summed steps
        clock._advance_to(target)
        return []


class _VirtualLoop(asyncio.SelectorEventLoop):
    """A selector loop whose time is the clock's and whose thread jobs freeze that time."""

    def __init__(self, clock: VirtualClock) -> None:
        selector = _VirtualSelector(clock)
        super().__init__(selector=selector)
        self.virtual_clock = clock
        self._clock_resolution = 1e-9
        selector.next_timer = self._next_timer

    def _next_timer(self) -> float | None:
        scheduled = self._scheduled  # type: ignore[attr-defined]  # the loop's timer heap
        return scheduled[0].when() if scheduled else None

    def time(self) -> float:
        return self.virtual_clock.time()

    def call_later(  # type: ignore[override]
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        """As asyncio's, but a positive delay is at least :data:`MIN_DELAY_S`. A real clock
        always moves on a little; virtual time stands still until the loop idles, so a wait
        of 1e-17 s (a rounding remainder) would otherwise come due at once, forever."""
        if 0 < delay < MIN_DELAY_S:
            delay = MIN_DELAY_S
        return super().call_later(delay, callback, *args, context=context)

    def run_in_executor(  # type: ignore[override]
        self, executor: concurrent.futures.Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        future = super().run_in_executor(executor, func, *args)
        clock = self.virtual_clock
        clock.threads_running += 1

        def _done(_: asyncio.Future[Any]) -> None:
            clock.threads_running -= 1

        future.add_done_callback(_done)
        return future


class VirtualClock:
    """Runs coroutines with virtual time; ``VirtualClock().run(main())`` like ``asyncio.run``.

    ``start_s`` is the virtual time the loop starts at; ``limit_s`` the virtual seconds a run
    may last; ``stall_real_s`` how long (real seconds) an idle loop with no timer waits for
    outside events (sockets, threads) before :class:`VirtualClockStalled`; ``seed`` what the
    global ``random`` is seeded with for the run (None: not touched).
    """

    def __init__(
        self,
        *,
        start_s: float = 0.0,
        limit_s: float = DEFAULT_LIMIT_S,
        stall_real_s: float = DEFAULT_STALL_REAL_S,
        seed: int | None = DEFAULT_SEED,
    ) -> None:
        if not limit_s > 0 or not stall_real_s > 0:
            raise ValueError("limit_s and stall_real_s must be positive")
        self._now = float(start_s)
        self._start_s = float(start_s)
        self.limit_s = float(limit_s)
        self.stall_real_s = float(stall_real_s)
        self.seed = seed
        self.threads_running = 0
        """Thread jobs in flight; virtual time stands still while there are any."""

    def time(self) -> float:
        """Virtual now (what ``loop.time()`` answers)."""
        return self._now

    def elapsed_s(self) -> float:
        """Virtual seconds since the clock started."""
        return self._now - self._start_s

    def _advance_to(self, when: float) -> None:
        if when - self._start_s > self.limit_s:
            raise VirtualTimeExceeded(
                f"virtual time would pass its limit of {self.limit_s:g} s (a task that never "
                "ends, or a wait with no bound?)"
            )
        self._now = max(self._now, when)

    def new_loop(self) -> asyncio.AbstractEventLoop:
        """A fresh event loop on this clock (``asyncio.Runner(loop_factory=clock.new_loop)``)."""
        return _VirtualLoop(self)

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        """Run ``main`` to completion on a new virtual-time loop, as ``asyncio.run`` does
        (left-over tasks are cancelled, async generators and the default executor shut down)."""
        saved = random.getstate()
        if self.seed is not None:
            random.seed(self.seed)
        try:
            with asyncio.Runner(loop_factory=self.new_loop) as runner:
                return runner.run(main)
        finally:
            if self.seed is not None:
                random.setstate(saved)

    @staticmethod
    def current() -> VirtualClock:
        """The clock of the running loop (``RuntimeError`` when it is not virtual)."""
        loop = asyncio.get_running_loop()
        if not isinstance(loop, _VirtualLoop):
            raise RuntimeError("not running under a VirtualClock (use VirtualClock().run(...))")
        return loop.virtual_clock

    async def advance(self, seconds: float) -> None:
        """Let every task run for ``seconds`` of virtual time (the caller sleeps that long)."""
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        await asyncio.sleep(seconds)

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        *,
        within_s: float,
        what: str = "the condition",
        poll_s: float = DEFAULT_POLL_S,
    ) -> float:
        """Wait until ``predicate()`` holds, checking every ``poll_s`` virtual seconds; returns
        the virtual seconds it took. ``TimeoutError`` naming ``what`` after ``within_s``.

        Polling costs nothing here (virtual time): it is exact to ``poll_s`` and deterministic.
        """
        started = self._now
        deadline = started + within_s
        while not predicate():
            if self._now >= deadline:
                raise TimeoutError(
                    f"{what} did not happen within {within_s:g} virtual seconds"
                )
            await asyncio.sleep(min(poll_s, deadline - self._now))
        return self._now - started


def run_virtual(
    main: Coroutine[Any, Any, T],
    *,
    start_s: float = 0.0,
    limit_s: float = DEFAULT_LIMIT_S,
    seed: int | None = DEFAULT_SEED,
) -> T:
    """``asyncio.run(main)`` on a fresh :class:`VirtualClock`."""
    return VirtualClock(start_s=start_s, limit_s=limit_s, seed=seed).run(main)


def virtual_time(
    test: Callable[..., Awaitable[Any]] | None = None,
    *,
    limit_s: float = 3600.0,
    seed: int | None = DEFAULT_SEED,
) -> Any:
    """Decorate an ``async def`` test so it runs under a fresh :class:`VirtualClock`.

    Works with pytest (fixtures still resolve: the signature is kept) and unittest alike; the
    decorated test is a plain function, so pytest-asyncio leaves it alone. Inside, use
    ``VirtualClock.current()``. ``limit_s``: virtual seconds before the test fails; ``seed``:
    see :class:`VirtualClock`.
    """

    def decorate(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError("@virtual_time decorates an async def function")

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return VirtualClock(limit_s=limit_s, seed=seed).run(fn(*args, **kwargs))

        return wrapper

    return decorate if test is None else decorate(test)


__all__ = [
    "VirtualClock",
    "VirtualClockStalled",
    "VirtualTimeExceeded",
    "run_virtual",
    "virtual_time",
]
