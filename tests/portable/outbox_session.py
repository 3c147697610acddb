"""The session the Outbox is driven with outside a runtime: tests, and the benches that measure
it (bench/wire_bytes.py, bench/mpy/board_site.py). Portable: pytest, the MicroPython runner and
the board heap bench, which copies this file next to board_site.py.

It has the shape agent/core/uplink/outbox.py asks of a session and nothing of a connection: it
is ready from the start (no birth to acknowledge), and whoever drives it acknowledges messages
by calling out.on_puback(session, mid). The runtimes' own sessions (agent/host/uplink.py,
agent/board/uplink.py) carry the same fields beside their connection's.
"""


class Session:
    def __init__(self, where="test broker", nonce=None):
        self.ready = True
        self.failed = None  # why the session must end, once it must
        self.inflight = {}  # message id -> Message, until its PUBACK
        self.state_sent = False
        self.where = where  # how log lines name the broker
        self.nonce = nonce  # 12 hex digits naming the v2 compact stream; None: a random name
