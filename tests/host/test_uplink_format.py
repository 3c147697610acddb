"""Which payload form goes to which broker: a metered broker gets the compact form by default."""

from agent.core.log import Log
from agent.core.store.queue import MemoryQueue
from agent.host.uplink import MqttUplink


class _Session:
    def __init__(self, broker):
        self.broker = broker


def _uplink(fmt, brokers):
    cfg = {"format": fmt, "brokers": brokers, "topic_prefix": "p"}
    return MqttUplink(cfg, "s1", MemoryQueue(), Log(write=lambda line: None))


def test_metered_broker_defaults_to_compact_and_explicit_format_wins():
    terrestrial = {"host": "a", "port": 1, "budget_bytes": 0}
    satellite = {"host": "b", "port": 2, "budget_bytes": 5_000_000, "budget_window": "day"}
    forced = {"host": "c", "port": 3, "budget_bytes": 1000, "format": "json"}
    up = _uplink("json", [terrestrial, satellite, forced])
    assert up._fmt() == "json"  # no session yet: the uplink's own form
    up.session = _Session(terrestrial)
    assert up._fmt() == "json"
    up.session = _Session(satellite)
    assert up._fmt() == "compact"
    up.session = _Session(forced)
    assert up._fmt() == "json"
    up = _uplink("compact", [terrestrial])
    up.session = _Session(terrestrial)
    assert up._fmt() == "compact"


def test_contract_2_takes_its_prefix_and_reaches_the_outbox():
    brokers = [{"host": "a", "port": 1}]
    cfg = {"format": "json", "contract": 2, "integrity_period": 120, "brokers": brokers}
    up = MqttUplink(cfg, "s1", MemoryQueue(), Log(write=lambda line: None))
    assert up.prefix == "site-agent/v2" and up.topics["series"] == "site-agent/v2/s1/series"
    assert up.out.version == 2 and up.out.integrity == 120.0
    up = _uplink("json", brokers)  # an explicit prefix wins; no contract: version 1
    assert up.prefix == "p" and up.out.version == 1
