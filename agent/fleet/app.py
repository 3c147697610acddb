"""The fleet view in one object: the model, the subscriber and the HTTP server, started and
stopped together (`site-agent fleet`, the demo and the tests use it).

    app = FleetApp("127.0.0.1", 1883, listen=("127.0.0.1", 0)).start()
    app.url    # http://127.0.0.1:PORT/
    app.stop()
"""

from agent.fleet.model import Fleet
from agent.fleet.server import FleetServer
from agent.fleet.subscriber import Subscriber


class FleetApp:
    def __init__(self, broker_host, broker_port, listen=("127.0.0.1", 8080), share=None,
                 silent_after=300.0, history_step=300.0, history_hours=24.0, max_sites=100000,
                 map_image=None, map_bounds=None, log=None, **mqtt):  # fmt: skip
        """`mqtt`: the Subscriber's options (prefix, tls, username, password, client_id,
        protocol, session_expiry, share_all, partition)."""
        size = max(1, int(round(history_hours * 3600.0 / history_step)))
        self.fleet = Fleet(silent_after=silent_after, history_step=history_step,
                           history_size=size, max_sites=max_sites, log=log)  # fmt: skip
        self.sub = Subscriber(self.fleet, broker_host, broker_port, share=share, log=log, **mqtt)
        self.broker = "%s:%s" % (broker_host, broker_port)
        self.share = share
        self.server = FleetServer(self.fleet, listen[0], listen[1], status=self.status,
                                  map_image=map_image, map_bounds=map_bounds, log=log)  # fmt: skip

    def status(self):
        return {"connected": self.sub.connected, "broker": self.broker, "share": self.share,
                "partition": self.sub.partition, "prefixes": self.sub.prefixes}  # fmt: skip

    @property
    def url(self):
        return self.server.url

    def start(self):
        self.server.start()
        self.sub.start()
        return self

    def stop(self):
        try:
            self.sub.stop()
        finally:
            self.server.stop()
