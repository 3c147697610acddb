"""The Outbox that both uplinks share: contract order, the in-flight window, acks tied to the
queue, requeue on a lost link, byte budgets and commands. Portable: pytest and MicroPython."""

from agent.core.log import Log
from agent.core.store.fsio import MemFs
from agent.core.store.queue import LANE_ALARM, LANE_ROUTINE, MemoryQueue
from agent.core.store.store import Store
from agent.core.uplink import contract
from agent.core.uplink.backoff import ByteBudget
from agent.core.uplink.outbox import Outbox

from outbox_session import Session

SITE = "s1"
TOPICS = dict((k, contract.topic("p", SITE, k)) for k in contract.TOPIC_KINDS)


class Facade:
    clock = None

    def readings(self):
        return [{"site": SITE, "device": "ups", "metric": "battery.charge", "value": 90,
                 "unit": "%", "time": 1.0, "quality": "good", "seq": None}]  # fmt: skip

    def active_alarms(self):
        return []


def rec(metric, value=1, alarm=False):
    r = {"site": SITE, "device": "ups", "metric": metric, "value": value, "unit": "",
         "time": 1.0, "quality": "good"}  # fmt: skip
    if alarm:
        r["alarm"] = "R/ups/" + metric
        r["event"] = "raise"
    return r


def fill_queue():
    q = MemoryQueue()
    for i in range(5):
        q.append(LANE_ROUTINE, rec("input.voltage", 220 + i))
    q.append(LANE_ALARM, rec("ups.status", "OB", alarm=True))
    q.commit()
    return q


class Wire:
    """Stands in for the MQTT client: records what was published, hands out message ids."""

    def __init__(self):
        self.sent = []
        self.mid = 0

    def publish(self, msg):
        self.mid += 1
        self.sent.append((self.mid, msg))
        return self.mid


def pump_all(out, s, wire, budget=None, acks=True):
    budget = budget or ByteBudget(0, 3600)
    for _ in range(50):
        out.pump(s, budget, wire.publish, "json")
        if not s.inflight:
            break
        if acks:
            for mid in list(s.inflight):
                out.on_puback(s, mid)


def test_order_after_connect_is_alarms_then_state_then_backlog():
    q = fill_queue()
    lines = []
    out = Outbox(q, SITE, TOPICS, Log(write=lines.append), batch_max=2, rate_msgs=0,
                 facade=Facade())  # fmt: skip
    s = Session()
    wire = Wire()
    pump_all(out, s, wire)
    kinds = [m.topic.split("/")[-1] for _, m in wire.sent]
    assert kinds[0] == "alarm", kinds
    assert kinds[1:3] == ["state", "alarms"], kinds
    assert set(kinds[3:]) == {"data"}, kinds
    values = []
    for _, m in wire.sent[3:]:
        values += [r["value"] for r in contract.decode_batch(m.payload)["readings"]]
    assert values == [220, 221, 222, 223, 224]
    # batch 1 holds the alarm and the first routine record: two messages, one ack to the queue
    assert q.depth() == 0 and out.acked == 3
    # said once, for tools/flash.py and the technician: the first batch the broker took
    assert len([x for x in lines if "uplink: first batch acknowledged" in x]) == 1, lines


def test_window_limits_messages_in_flight_and_a_batch_waits_for_every_part():
    q = fill_queue()
    out = Outbox(q, SITE, TOPICS, Log(), batch_max=2, rate_msgs=0, facade=Facade(), window=2)
    s = Session()
    wire = Wire()
    budget = ByteBudget(0, 3600)
    out.pump(s, budget, wire.publish, "json")
    assert len(s.inflight) == 2 and len(wire.sent) == 2  # the alarm part of batch 1, the state
    assert q.depth() == 6  # nothing acknowledged yet
    out.on_puback(s, wire.sent[0][0])
    assert q.depth() == 6  # batch 1's routine part is still to go
    out.on_puback(s, wire.sent[1][0])
    out.pump(s, budget, wire.publish, "json")
    assert [m.topic.split("/")[-1] for _, m in wire.sent[2:]] == ["alarms", "data"]
    out.on_puback(s, wire.sent[3][0])
    assert q.depth() == 4


def test_a_lost_link_requeues_what_was_in_flight_duplicates_never_gaps():
    q = fill_queue()
    out = Outbox(q, SITE, TOPICS, Log(), batch_max=10, rate_msgs=0, facade=Facade())
    s = Session()
    wire = Wire()
    out.pump(s, ByteBudget(0, 3600), wire.publish, "json")
    assert s.inflight
    out.end_session(s)  # no PUBACK arrived
    assert not s.inflight and q.depth() == 6
    s2 = Session()
    wire2 = Wire()
    pump_all(out, s2, wire2)
    assert q.depth() == 0
    assert out.on_puback(s, 1) is None  # a late ack of the old session changes nothing


def test_routine_backlog_never_overdraws_the_budget_but_alarms_do():
    q = fill_queue()
    out = Outbox(q, SITE, TOPICS, Log(), batch_max=1, rate_msgs=0, facade=Facade())
    s = Session()
    wire = Wire()
    budget = ByteBudget(1, 3600)  # one byte a window: nothing routine fits
    pump_all(out, s, wire, budget)
    kinds = [m.topic.split("/")[-1] for _, m in wire.sent]
    assert kinds == ["alarm", "state", "alarms"], kinds
    assert out.budget_blocked and q.depth() == 5


def test_a_message_acked_in_a_later_budget_window_counts_there_too():
    # Bytes in flight at a boundary cross the carrier's meter in the next window: a drill at
    # 240x sent in one site hour what arrived in the next and overdrew that one.
    q = MemoryQueue()
    for i in range(4):
        q.append(LANE_ROUTINE, rec("input.voltage", 220 + i))
    q.commit()
    clock = [3600.0 - 10]
    out = Outbox(q, SITE, TOPICS, Log(), batch_max=1, rate_msgs=0, facade=Facade(),
                 wall=lambda: clock[0])  # fmt: skip
    s = Session()
    wire = Wire()
    budget = ByteBudget(100000, 3600)
    out.pump(s, budget, wire.publish, "json")
    sent = sum(contract.publish_bytes(m.topic, len(m.payload)) for _, m in wire.sent)
    assert budget.used == sent and len(s.inflight) == 4
    first = wire.sent[0][0]
    out.on_puback(s, first)  # acked in the same window: counted once
    assert budget.used == sent
    clock[0] = 3600.0 + 5  # the next window: the rest are acked there
    late = [m for mid, m in wire.sent if mid != first]
    for mid, _ in wire.sent[1:]:
        out.on_puback(s, mid)
    assert budget.used == sum(contract.publish_bytes(m.topic, len(m.payload)) for m in late)
    for mid, _ in wire.sent:
        out.on_puback(s, mid)  # a repeated ack counts nothing more
    assert budget.used == sum(contract.publish_bytes(m.topic, len(m.payload)) for m in late)


def test_commands_are_bounded_and_answered_on_the_reply_topic():
    out = Outbox(MemoryQueue(), SITE, TOPICS, Log(), rate_msgs=0)
    for _ in range(70):
        out.command_in(b'{"id":"x","cmd":"ping"}')
    assert out.commands_dropped == 6
    answers = []
    out.serve_commands(answers.append)  # no facade attached: nothing is answered
    assert answers == [] and out.command_in(b"{}")


class SiteFacade(Facade):
    """A facade whose site state the test changes."""

    def __init__(self):
        self.source = "unknown"

    def readings(self):
        return Facade.readings(self) + [
            {"site": SITE, "device": "site", "metric": "site.power_source", "value": self.source,
             "unit": "", "time": 1.0, "quality": "good", "seq": None}]  # fmt: skip


def test_retained_state_goes_again_when_the_site_state_changes():
    # Sent at connect before the first poll ("unknown"), it must not stay so until the next
    # alarm: a change of power source sends the retained state again (found by the drill).
    q = MemoryQueue()
    f = SiteFacade()
    out = Outbox(q, SITE, TOPICS, Log(), batch_max=10, rate_msgs=0, facade=f)
    s = Session()
    wire = Wire()
    pump_all(out, s, wire)
    assert [m.topic.split("/")[-1] for _, m in wire.sent] == ["state", "alarms"]
    pump_all(out, s, wire)
    assert len(wire.sent) == 2  # nothing changed: nothing again
    f.source = "battery"
    pump_all(out, s, wire)
    kinds = [m.topic.split("/")[-1] for _, m in wire.sent]
    assert kinds == ["state", "alarms", "state", "alarms"], kinds
    assert b'"battery"' in wire.sent[2][1].payload


def test_the_retained_state_comes_from_the_stored_latest_values_with_their_seq():
    class Empty(Facade):
        def readings(self):  # right after a start the loop has polled nothing yet
            return []

    q = Store("/q", 1 << 20, fs=MemFs())  # what the store persisted before the restart
    for i in range(5):
        q.append(LANE_ROUTINE, rec("input.voltage", 220 + i))
    q.append(LANE_ALARM, rec("ups.status", "OB", alarm=True))
    q.commit()
    out = Outbox(q, SITE, TOPICS, Log(), batch_max=10, rate_msgs=0, facade=Empty())
    out.state_changed()  # told before the link came up: the state at connect is that state
    s = Session()
    wire = Wire()
    pump_all(out, s, wire)
    states = [m for _, m in wire.sent if m.topic == TOPICS["state"]]
    assert len(states) == 1 and states[0].retain
    recs = contract.decode_batch(states[0].payload)["readings"]
    assert [(r["metric"], r["value"], r["seq"]) for r in recs] == [("input.voltage", 224, 4)]
    # the first complete poll cycle: published again, with the new values
    q.append(LANE_ROUTINE, rec("input.voltage", 230))
    q.append(LANE_ROUTINE, rec("battery.charge", 88))
    q.commit()
    out.state_changed()
    pump_all(out, s, wire)
    states = [m for _, m in wire.sent if m.topic == TOPICS["state"]]
    assert len(states) == 2
    recs = contract.decode_batch(states[1].payload)["readings"]
    assert sorted((r["metric"], r["value"]) for r in recs) == [("battery.charge", 88),
                                                               ("input.voltage", 230)]  # fmt: skip
    assert all(isinstance(r["seq"], int) for r in recs)
    assert [m.topic for _, m in wire.sent].count(TOPICS["alarms"]) == 2  # the set goes with it
