"""The agent's own health on the board, polled like a device ("agent"), as the host's
HealthDriver is (agent/host/health.py).

Samples: the portable part (agent/core/selfhealth.py: uptime, queue depth and bytes, use of the
store's budget, uplink connected, clock trusted), free heap and the last reset's cause
(selfhealth.board_samples), the boot count (agent.boot_count) and the network link and Wi-Fi
RSSI (agent.net.link, agent.net.rssi). The first poll runs at start, so reset cause and boot
count are published after every boot.
"""

from agent.core import selfhealth
from drivers.base import BETA, Driver


class BoardHealthDriver(Driver):
    INFO = {
        "name": "health",
        "version": "0.1",
        "maturity": BETA,
        "transport": "none",
        "description": "the board's own health: heap, reset cause, boots, network, queue",
    }

    def __init__(self, device, queue=None, uplink=None, clock=None, budget_bytes=None,
                 boot_count=None, net=None):  # fmt: skip
        Driver.__init__(self, device)
        self.queue = queue
        self.uplink = uplink
        self.clock = clock
        self.budget_bytes = budget_bytes
        self.boot_count = boot_count
        self.net = net

    async def read(self):
        out = selfhealth.agent_samples(self.queue, self.uplink, self.clock, self.budget_bytes)
        out.extend(selfhealth.board_samples())
        if self.boot_count is not None:
            out.append(("agent.boot_count", int(self.boot_count), ""))
        if self.net is not None:
            out.extend(self.net.samples())
        return out
