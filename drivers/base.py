"""The shape every driver has (portable). Copy drivers/skeleton.py to start a new one.

A driver knows one protocol or device family. The agent calls, for each device:

    driver = DriverClass(device_config)    # no I/O here
    result = await driver.poll(budget_s)    # opens on first use; never raises
    driver.info()                           # name, version, maturity, transport
    await driver.close()

A subclass implements `open`, `read` and `close`, and declares the `[devices.options]` it reads
in OPTIONS (see below). `read` returns samples, a list of
(metric, value, unit) with metric names from agent/core/registry.py, leaving out values the device
marks unknown (never a made-up zero). It raises DeviceError (or ParseError) with a reason a
technician can act on. `poll` wraps `read` so that nothing escapes: an error, a timeout or a bug
becomes a stale result with its reason, and the transport is closed so the next poll starts clean.
What a driver found worth saying besides its samples (a device identified, a profile changed) it
says with `self.remark(level, text)`; the poll result carries them to the log and to `poll`.
"""

import asyncio

from agent.core.compat import monotonic, wait_for
from agent.core.errors import DeviceError

# Maturity, as NUT records it for its drivers.
EXPERIMENTAL = "experimental"
BETA = "beta"
STABLE = "stable"


class PollResult:
    __slots__ = ("samples", "error", "raw", "duration", "remarks")

    def __init__(self, samples, error=None, raw=None, duration=0.0, remarks=()):
        self.samples = samples  # [(metric, value, unit)]; may be partial when error is set
        self.error = error  # None when the poll succeeded, else the reason the device is stale
        self.raw = raw  # optional {label: raw value} for the console's `poll <device>`
        self.duration = duration
        self.remarks = remarks  # [(level, text)]: "info" or "warning", for the log

    @property
    def ok(self):
        return self.error is None

    def __repr__(self):
        if self.error:
            return "PollResult(stale: %s)" % self.error
        return "PollResult(%d samples, %.3fs)" % (len(self.samples), self.duration)


def option_values(declared, given):
    """The options a driver works with: each declared default, overridden by `given` (the
    device's validated [devices.options], or None)."""
    out = {}
    for name, spec in declared or ():
        if "default" in spec:
            out[name] = spec["default"]
    out.update(given or {})
    return out


class Driver:
    INFO = {
        "name": "base",
        "version": "0.0",
        "maturity": EXPERIMENTAL,
        "transport": "none",
        "description": "",
    }
    # The [devices.options] this driver reads, in the config schema's shape: a tuple of
    # (name, agent.core.config.checker.field(...)), with a range on every number. `site-agent
    # check` (agent/core/config/validate.py) checks a device's options against it, with the key
    # path in each message, and fills the defaults: a driver reads device["options"][name]
    # without checking again. Unknown names are errors. An option is shown by `config show` and
    # the MQTT `config` command only when its field says public=True; every other one counts as
    # a secret. None (for a driver written before this table) takes options unchecked, all of
    # them secret.
    OPTIONS = ()

    def __init__(self, device):
        self.device = device  # the validated config dict of this device
        self.id = device.get("id", "?")
        self.is_open = False
        self.raw = None  # a subclass may set {label: raw value} during read()
        self.options = option_values(self.OPTIONS, device.get("options"))
        self.remarks = []  # [(level, text)] said during this poll (see remark())

    # --- what a subclass implements -------------------------------------------------------
    async def open(self):
        """Acquire the transport. Raise DeviceError if it cannot be had."""

    async def read(self):
        """Poll the device once; return [(metric, value, unit)]. Raise DeviceError on failure."""
        raise NotImplementedError

    async def close(self):
        """Release the transport. Must not raise."""

    # --- what the agent calls -------------------------------------------------------------
    def info(self):
        return dict(self.INFO)

    def remark(self, level, text):
        """Say something for the log ("info" or "warning") with this poll's result."""
        self.remarks.append((level, text))

    async def poll(self, budget_s):
        """Open if needed and read once within `budget_s` seconds. Never raises (but lets
        cancellation of the caller through)."""
        started = monotonic()
        self.raw = None
        self.remarks = []
        try:
            # compat.wait_for runs the read in this task on CPython (no task and timer per
            # poll); the sleep(0) keeps the one yield a poll always made, so polls started by
            # the loop's pass interleave with a caller's poll as before
            await asyncio.sleep(0)
            samples = await wait_for(self._open_and_read(), budget_s)
            return PollResult(samples, None, self.raw, monotonic() - started, self.remarks)
        except asyncio.TimeoutError:
            error = "no answer within %gs" % budget_s
        except DeviceError as e:
            error = str(e) or e.__class__.__name__
        except asyncio.CancelledError:
            await self._safe_close()
            raise
        except Exception as e:  # a driver bug must not stop the agent; report it as the reason
            error = "driver error: %s: %s" % (e.__class__.__name__, e)
        await self._safe_close()
        return PollResult([], error, self.raw, monotonic() - started, self.remarks)

    async def _open_and_read(self):
        if not self.is_open:
            await self.open()
            self.is_open = True
        samples = await self.read()
        if samples is None:
            raise DeviceError("driver returned no samples")
        return samples

    async def _safe_close(self):
        if not self.is_open:
            return
        self.is_open = False
        try:
            await self.close()
        except Exception:
            pass
