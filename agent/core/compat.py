"""The few places where CPython and MicroPython differ, hidden behind one spelling."""

import time

try:  # MicroPython: const() folds into the bytecode and costs no RAM.
    from micropython import const  # noqa: F401
except ImportError:

    def const(value):
        return value


MICROPYTHON = hasattr(time, "ticks_ms")

if MICROPYTHON:

    def monotonic():
        """Seconds since an arbitrary point, never going backwards (float)."""
        return time.ticks_ms() / 1000.0

else:

    def monotonic():
        """Seconds since an arbitrary point, never going backwards (float)."""
        return time.monotonic()


def wall_time():
    """Seconds since the Unix epoch as the system clock says; may be untrusted (core/clock)."""
    t = time.time()
    # MicroPython on some ports counts from 2000-01-01; shift to the Unix epoch.
    if MICROPYTHON and t < 946684800:
        t += 946684800
    return float(t)


if MICROPYTHON:
    _timeout = None
else:
    from asyncio import timeout as _timeout  # CPython 3.11+


async def wait_for(awaitable, seconds):
    """asyncio.wait_for(awaitable, seconds): its result, or TimeoutError. Where the runtime has
    asyncio.timeout (CPython) the awaitable runs in the caller's task: wait_for makes a task and
    a timer per call, a good part of a poll's CPU on the host (bench/cost_stages.py)."""
    if _timeout is None:
        import asyncio

        return await asyncio.wait_for(awaitable, seconds)
    async with _timeout(seconds):
        return await awaitable
