"""A driver with no transport for tests of the loop, the uplink and the commands: it counts its
polls and reports readings made from the count (portable; host tests import it too)."""

from drivers.base import Driver


def _default(calls):
    return [("battery.charge", 50.0 + calls % 50, "%"), ("battery.voltage", 53.2, "V")]


class Counting(Driver):
    INFO = {"name": "counting", "version": "1", "maturity": "experimental", "transport": "none"}

    def __init__(self, device, readings=_default):
        Driver.__init__(self, device)
        self.calls = 0
        self.readings = readings  # calls -> [(metric, value, unit)]

    async def open(self):
        pass

    async def close(self):
        pass

    async def read(self):
        self.calls += 1
        return self.readings(self.calls)
