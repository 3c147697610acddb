# Mini test runner that runs INSIDE MicroPython (driven by tests/mpy/run.mjs, or by hand on a
# board).
#
# Output contract (one line each, parsed by tests/host/test_micropython.py):
#   PASS <module>.<test>
#   FAIL <module>.<test>: <ExcType>: <message>      followed by the MicroPython traceback
#   FAIL <module>: import failed: <ExcType>: <msg>   when the module itself does not import
#   DONE <module> passed=<n> failed=<m>
# Tests are plain module-level `def test_x():` functions, called in name order (MicroPython keeps
# no definition order in module dicts). Coroutines are run by the test via support.run().

import sys


def _drive(coro):
    """asyncio.run for the WebAssembly port, whose asyncio has no run(): it schedules tasks on
    JavaScript timers, which cannot fire while Python code runs. We step the port's own task queue
    here instead, sleeping (busy-waiting, as time.sleep_ms does on this port) until the next task
    is due. Scheduling, wait_for, gather, Event and cancellation are the port's own code."""
    import asyncio
    import time

    core = asyncio.core
    box = []

    async def main():
        try:
            box.append((True, await coro))
        except BaseException as e:  # noqa: B036, BLE001 - handed back to the caller as is
            box.append((False, e))

    asyncio.create_task(main())
    try:
        while not box:
            core._run_iter()
            if box:
                break
            head = core._task_queue.peek()
            if head is None:
                raise RuntimeError("asyncio deadlock: the coroutine waits and no task is due")
            time.sleep_ms(max(0, time.ticks_diff(head.ph_key, time.ticks_ms())))
    finally:
        # _run_iter arms a JavaScript timer when a task is due later; disarm it so nothing runs
        # behind our back once we return to JavaScript.
        if core.asyncio_timer is not None:
            import js

            js.clearTimeout(core.asyncio_timer)
            core.asyncio_timer = None
    ok, value = box[0]
    if not ok:
        raise value
    return value


def install_asyncio_run():
    """Give asyncio a blocking run() where the port lacks one (WebAssembly); no-op elsewhere.
    Imports asyncio lazily so that the runner itself adds next to nothing to heap figures."""
    try:
        import asyncio
    except ImportError:  # a firmware without asyncio still runs the sync tests
        return False
    if not hasattr(asyncio, "run"):
        asyncio.run = _drive
        return True
    return False


def _first_line(e):
    msg = str(e)
    n = msg.find("\n")
    return msg if n < 0 else msg[:n] + " ..."


def run_module(name):
    """Import test module `name`, run its test_* functions; return (passed, failed)."""
    try:
        mod = __import__(name)
    except BaseException as e:  # noqa: B036, BLE001 - any import failure is a test failure
        print("FAIL %s: import failed: %s: %s" % (name, type(e).__name__, _first_line(e)))
        sys.print_exception(e, sys.stdout)
        print("DONE %s passed=0 failed=1" % name)
        return 0, 1
    tests = sorted(k for k in dir(mod) if k.startswith("test_") and callable(getattr(mod, k)))
    passed = failed = 0
    for t in tests:
        try:
            getattr(mod, t)()
        except BaseException as e:  # noqa: B036, BLE001 - a test may raise anything, report all
            failed += 1
            print("FAIL %s.%s: %s: %s" % (name, t, type(e).__name__, _first_line(e)))
            sys.print_exception(e, sys.stdout)
        else:
            passed += 1
            print("PASS %s.%s" % (name, t))
    if not tests:
        failed += 1
        print("FAIL %s: no test_* functions found" % name)
    print("DONE %s passed=%d failed=%d" % (name, passed, failed))
    return passed, failed


def import_module(name):
    """Import one module; print OK or FAIL with the MicroPython traceback, then DEPS and the
    modules that import loaded besides it. Returns True if ok."""
    before = set(sys.modules)
    try:
        __import__(name)
    except BaseException as e:  # noqa: B036, BLE001
        print("FAIL %s: import failed: %s: %s" % (name, type(e).__name__, _first_line(e)))
        sys.print_exception(e, sys.stdout)
        return False
    print("OK %s" % name)
    print("DEPS " + " ".join(sorted(k for k in sys.modules if k not in before and k != name)))
    return True


def main(names):
    """Run several test modules in this interpreter (for a board: mpremote run)."""
    install_asyncio_run()
    total_p = total_f = 0
    for n in names:
        p, f = run_module(n)
        total_p += p
        total_f += f
    print("TOTAL passed=%d failed=%d" % (total_p, total_f))
    return total_f == 0
