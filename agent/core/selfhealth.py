"""The agent's own health as samples, the part both runtimes share (portable).

    agent_samples(queue, uplink, clock, budget_bytes, started)   # queue, uplink, clock, uptime
    board_samples()                                              # free heap, reset cause (board)

Samples are driver-shaped [(metric, value, unit)], so the host's HealthDriver
(agent/host/health.py) and the board's equivalent poll them like any device ("agent").
Nothing here raises: a part that cannot be read is left out (never a made-up zero).
"""

from agent.core.compat import monotonic

QUEUE_USED = "agent.queue.used"  # % of the store's byte budget in use
CLOCK_TRUSTED = "agent.clock.trusted"
RESET_CAUSE = "agent.reset_cause"

# machine.reset_cause() constants by name -> our word (the values differ between ports).
RESET_NAMES = (
    ("PWRON_RESET", "power_on"),
    ("HARD_RESET", "hard"),
    ("WDT_RESET", "watchdog"),
    ("DEEPSLEEP_RESET", "deep_sleep"),
    ("SOFT_RESET", "soft"),
    ("BROWNOUT_RESET", "brownout"),
)

_STARTED = monotonic()


def agent_samples(queue=None, uplink=None, clock=None, budget_bytes=None, started=None):
    out = [("agent.uptime", int(monotonic() - (_STARTED if started is None else started)), "s")]
    if queue is not None:
        try:
            st = queue.stats()
        except Exception:  # a failing store is reported by the loop; here it is just unknown
            st = None
        if st:
            depth = st.get("depth")
            if isinstance(depth, dict):
                out.append(("agent.queue.depth", sum(depth.values()), ""))
            b = st.get("bytes")
            budget = budget_bytes or st.get("budget")
            if isinstance(b, int):
                out.append(("agent.queue.bytes", b, "B"))
                if budget:
                    out.append((QUEUE_USED, round(100.0 * b / budget, 1), "%"))
        counters = getattr(queue, "counters", None)  # the durable store's thinned/dropped
        if counters is not None:
            try:
                c = counters()
            except Exception:
                c = {}
            for metric in ("agent.queue.thinned", "agent.queue.dropped"):
                if isinstance(c.get(metric), int):
                    out.append((metric, c[metric], ""))
    if uplink is not None:
        try:
            out.append(("agent.uplink.connected", bool(uplink.state().get("connected")), ""))
        except Exception:
            pass
    if clock is not None:
        out.append((CLOCK_TRUSTED, clock.trusted(), ""))
    return out


def board_samples():
    """Free heap and the last reset's cause on MicroPython; [] where there is no such thing."""
    out = []
    try:
        import gc

        gc.collect()
        out.append(("agent.heap_free", gc.mem_free(), "B"))
    except (ImportError, AttributeError):
        pass
    try:
        import machine

        cause = machine.reset_cause()
        word = "unknown"
        for name, w in RESET_NAMES:
            if getattr(machine, name, None) == cause:
                word = w
                break
        out.append((RESET_CAUSE, word, ""))
    except (ImportError, AttributeError):
        pass
    return out
