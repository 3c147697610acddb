"""The board's few pieces of hardware the program touches directly, from the board table
(MicroPython): the status LED, the safe-mode button, the reset cause, the RTC, and the REPL's
UART as a console port. Everything else goes through agent/board adapters.

LED patterns (so a technician can tell from across the cabinet):
    "boot"   fast blink, 5 Hz       the boot window: press the button now for safe mode
    "run"    short blink every 2 s  polling; a second blink when the uplink is connected
    "safe"   on 1 s, off 1 s        safe mode
"""

import asyncio

from agent.core.selfhealth import RESET_NAMES

SAFE_HOLD_S = 1.0  # the button must be held this long within the boot window


def reset_cause(machine):
    """Our word for machine.reset_cause(): power_on, hard, watchdog, deep_sleep, soft, unknown."""
    try:
        cause = machine.reset_cause()
    except Exception:
        return "unknown"
    for name, word in RESET_NAMES:
        if getattr(machine, name, None) == cause:
            return word
    return "unknown"


def _pin(machine, spec, mode_out):
    if not spec:
        return None
    Pin = machine.Pin
    if mode_out:
        return Pin(spec["pin"], Pin.OUT)
    pull = {"up": Pin.PULL_UP, "down": Pin.PULL_DOWN}.get(spec.get("pull"))
    return Pin(spec["pin"], Pin.IN, pull) if pull is not None else Pin(spec["pin"], Pin.IN)


class Led:
    """The status LED (a plain GPIO, or a WS2812 where the board table says kind "ws2812")."""

    def __init__(self, machine, spec):
        self.spec = spec
        self.pattern = "boot"
        self.extra = lambda: False  # second blink in "run" (uplink connected)
        self.pin = None
        self.np = None
        if not spec:
            return
        try:
            if spec.get("kind") == "ws2812":
                import neopixel

                self.np = neopixel.NeoPixel(machine.Pin(spec["pin"], machine.Pin.OUT), 1)
            else:
                self.pin = _pin(machine, spec, True)
        except Exception:  # no LED is no reason not to run
            self.pin = self.np = None

    def set(self, on):
        if self.np is not None:
            self.np[0] = (0, 16, 0) if on else (0, 0, 0)
            self.np.write()
        elif self.pin is not None:
            self.pin.value(1 if bool(on) == bool(self.spec.get("active", 1)) else 0)

    async def run(self):
        if self.pin is None and self.np is None:
            return
        while True:
            p = self.pattern
            if p == "boot":
                self.set(1)
                await asyncio.sleep(0.1)
                self.set(0)
                await asyncio.sleep(0.1)
            elif p == "safe":
                self.set(1)
                await asyncio.sleep(1)
                self.set(0)
                await asyncio.sleep(1)
            else:
                self.set(1)
                await asyncio.sleep(0.05)
                self.set(0)
                if self.extra():
                    await asyncio.sleep(0.15)
                    self.set(1)
                    await asyncio.sleep(0.05)
                    self.set(0)
                await asyncio.sleep(1.8)


async def button_held(machine, spec, window_s, led=None):
    """True when the safe-mode button is held for SAFE_HOLD_S within the first window_s."""
    if not spec or window_s <= 0:
        if window_s > 0:
            await asyncio.sleep(window_s)
        return False
    try:
        pin = _pin(machine, spec, False)
    except Exception:
        await asyncio.sleep(window_s)
        return False
    active = spec.get("active", 0)
    held = 0.0
    step = 0.05
    t = 0.0
    while t < window_s:
        if pin.value() == active:
            held += step
            if held >= SAFE_HOLD_S:
                return True
        else:
            held = 0.0
        await asyncio.sleep(step)
        t += step
    return False


def set_rtc(machine, t):
    """Set the board's RTC to Unix time t (for log times; readings use agent/core/clock.py)."""
    import time

    y, mo, d, h, mi, s, wd, _ = time.gmtime(int(t))[:8]
    machine.RTC().datetime((y, mo, d, wd, h, mi, s, 0))


class StdioUart:
    """The REPL's UART (stdin/stdout) with the few methods agent/board/console_uart.py uses, so
    the console can share the USB serial port with the log on boards that have no other."""

    def __init__(self):
        import select
        import sys

        self.inp = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else sys.stdin
        self.outp = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else sys.stdout
        self.poll = select.poll()
        self.poll.register(sys.stdin, select.POLLIN)

    def any(self):
        return 1 if self.poll.poll(0) else 0

    def read(self, n):
        return self.inp.read(1) if n else b""

    def write(self, data):
        return self.outp.write(data)

    def txdone(self):
        return True

    def deinit(self):
        pass
