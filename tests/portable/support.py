"""Helpers for portable tests: plain functions that work under pytest and the MicroPython runner
(tests/mpy/mpy_runner.py). Keep this tiny; no pytest imports."""

import asyncio


def raises(exc_type, fn, *args, **kw):
    """Call fn(*args, **kw); return the exception if it is an exc_type, else AssertionError."""
    try:
        fn(*args, **kw)
    except exc_type as e:
        return e
    raise AssertionError("%s did not raise %s" % (getattr(fn, "__name__", fn), exc_type.__name__))


def run(coro):
    """Run a coroutine to completion and return its result (asyncio.run on both runtimes; the
    MicroPython runner supplies asyncio.run on ports that lack it, such as WebAssembly)."""
    return asyncio.run(coro)
