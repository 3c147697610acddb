"""The upstream MQTT contract, version 1: topics and payloads (portable; docs/mqtt.md is its prose
and the two must agree).

Topics, under a configurable prefix (default "site-agent/v1"):
    <prefix>/<site>/data      batches of readings, QoS 1, not retained
    <prefix>/<site>/alarm     batches of alarm events, QoS 1, not retained
    <prefix>/<site>/state     the latest reading of every series, QoS 1, retained
    <prefix>/<site>/alarms    the set of active alarms, QoS 1, retained
    <prefix>/<site>/status    birth and last will, QoS 1, retained
    <prefix>/<site>/cmd       commands to the agent (the agent subscribes, QoS 1)
    <prefix>/<site>/reply     replies to commands, QoS 1
Batch payloads (data, alarm, state) come in two forms told apart by their first byte: JSON ("{")
or compact (0xC1, see agent/core/uplink/compact.py). The JSON form of a batch:
    {"v": 1, "site": s, "batch": id, "kind": "data"|"alarm"|"state", "readings": [record, ...]}
A record is Reading.to_dict() (site, device, metric, value, unit, time, quality, seq); an alarm
event (agent/core/monitor/alarms.py) is a record that also has "alarm" (its id
"RULE/device/metric"), "event" ("raise"|"clear"), "rule", "severity" and the alarm's context keys.
A record's time is estimated exactly when its quality is "est" (or it carries "est": true).

Contract v2 (topic prefix "site-agent/v2") keeps these topics and the status, alarms, command and
reply payloads as they are, and adds:
    <prefix>/<site>/series    the compact stream's series table, QoS 1, retained
Its batches: JSON (agent/core/uplink/jsonv2.py: one entry per device poll) or compact (0xC2,
agent/core/uplink/compact2.py: a stateful stream on the data topic, report by exception).
decode() takes a payload of any topic in any served version; docs/mqtt.md is its prose.
"""

import json

CONTRACT_VERSION = 1  # what status, alarms and reply payloads say in "v" (unchanged in v2)
VERSIONS = (1, 2)  # served: uplink.contract chooses

KIND_DATA = "data"
KIND_ALARM = "alarm"
KIND_STATE = "state"
BATCH_KINDS = (KIND_DATA, KIND_ALARM, KIND_STATE)
KIND_SERIES = "series"
TOPIC_KINDS = BATCH_KINDS + ("alarms", "status", "cmd", "reply", KIND_SERIES)

FORMAT_JSON = "json"
FORMAT_COMPACT = "compact"

ONLINE = "online"
OFFLINE = "offline"
SITE_INFO_KEYS = ("name", "kind", "location")

# MQTT fixed overheads used for wire accounting: a QoS 1 PUBLISH carries a 1-byte fixed header,
# a 1-4 byte remaining length, a 2-byte topic length and a 2-byte packet id; its PUBACK is 4 bytes.
PUBACK_BYTES = 4


def topic(prefix, site, kind):
    return "%s/%s/%s" % (prefix, site, kind)


def default_prefix(version):
    """The topic prefix of a contract version when the config names none."""
    return "site-agent/v%d" % version


def is_alarm_record(record):
    return "alarm" in record


def _dumps(body):
    return json.dumps(body, separators=(",", ":")).encode()


def encode_batch(site, batch_id, records, kind=KIND_DATA, fmt=FORMAT_JSON, version=1):
    """The payload of one batch in the chosen form (bytes). Stateless forms only: v2's compact
    data stream is agent/core/uplink/compact2.Stream (the Outbox keeps one per session)."""
    if version == 2:
        from agent.core.uplink import jsonv2

        payload = jsonv2.encode(site, batch_id, records, kind)
        if fmt == FORMAT_COMPACT:
            from agent.core.uplink import compact2

            return compact2.wrap_payload(payload)
        return payload
    if fmt == FORMAT_COMPACT:
        from agent.core.uplink import compact

        return compact.encode(site, batch_id, records, kind)
    body = {"v": CONTRACT_VERSION, "site": site, "batch": batch_id, "kind": kind}
    body["readings"] = records
    return _dumps(body)


def decode_batch(payload, ctx=None, site=None):
    """Parse a batch of any served version and form (the operations centre's side, and our
    tests) into {"v", "site", "batch", "kind", "readings": [record, ...]}; records have the v1
    shape. ctx: a dict kept per site, which v2's compact stream needs to rebuild the readings it
    leaves out (without one, only what a message carries itself comes out); site: the site id
    from the topic. Raises ValueError for anything that is not a batch."""
    head = payload[:1]
    if head == b"\xc1":
        from agent.core.uplink import compact

        return compact.decode(payload)
    if head == b"\xc2":
        return _v2(payload, ctx, site)
    try:
        body = json.loads(payload)
    except Exception as e:  # json raises ValueError on CPython, ValueError/TypeError elsewhere
        raise ValueError("batch is not JSON: %s" % e) from e
    if isinstance(body, dict) and body.get("v") == 2:
        return _v2(payload, ctx, site)
    if not isinstance(body, dict) or body.get("v") != CONTRACT_VERSION:
        raise ValueError("not a v1 or v2 batch")
    readings = body.get("readings")
    if not isinstance(readings, list):
        raise ValueError("batch without a readings list")
    body.setdefault("kind", KIND_DATA)
    return body


def _v2(payload, ctx, site):
    from agent.core.uplink import decode2

    try:
        out = decode2.decode_v2(bytes(payload), {} if ctx is None else ctx, site)
    except ValueError:
        raise
    except Exception as e:  # a truncated or garbled payload: IndexError, KeyError, TypeError...
        raise ValueError("malformed v2 payload: %r" % (e,)) from e
    if out.get("kind") not in BATCH_KINDS and out.get("kind") != KIND_SERIES:
        raise ValueError("v2 payload of unknown kind %r" % (out.get("kind"),))
    return out


def decode(kind, payload, ctx=None, site=None):
    """One message of topic kind `kind` (data, alarm, state, series, status, alarms, reply) in
    any served version -> a dict: batches as decode_batch(), the series table as decode2 gives
    it, the JSON messages as parsed. ctx: a dict kept per site (see decode_batch). Raises
    ValueError naming what was wrong."""
    if kind in BATCH_KINDS:
        return decode_batch(payload, ctx, site)
    if kind == KIND_SERIES:
        out = _v2(payload, ctx, site)
        if out.get("kind") != KIND_SERIES:
            raise ValueError("series topic without a series table")
        return out
    try:
        body = json.loads(payload)
    except Exception as e:
        raise ValueError("%s message is not JSON: %s" % (kind, e)) from e
    if not isinstance(body, dict) or body.get("v") not in VERSIONS:
        raise ValueError("%s message is not a contract object" % kind)
    return body


def site_info(site):
    """What the status messages say about the site, from the config's [site] table: its name,
    kind and location (the keys given, none empty)."""
    info = {}
    for k in SITE_INFO_KEYS:
        v = site.get(k)
        if isinstance(v, dict):
            v = {lk: lv for lk, lv in v.items() if lv is not None and lv != ""}
        if v:
            info[k] = v
    return info


def status_payload(state, reason=None, version=None, boot=None, session=None, time=None,
                   info=None):  # fmt: skip
    """Birth ("online") and last will / goodbye ("offline" with a reason). `info` (site_info())
    adds the site's name, kind and location, so an operations centre that starts while a site is
    offline still knows what and where it is."""
    body = {"v": CONTRACT_VERSION, "state": state}
    if info:
        for k in SITE_INFO_KEYS:
            if info.get(k):
                body[k] = info[k]
    if reason:
        body["reason"] = reason
    if version:
        body["agent"] = version
    if boot is not None:
        body["boot"] = boot
    if session is not None:
        body["session"] = session
    if time is not None:
        body["time"] = time
    return _dumps(body)


def alarms_payload(site, active, time=None):
    """The retained set of active alarms: {"v", "site", "time", "alarms": [event, ...]}."""
    return _dumps({"v": CONTRACT_VERSION, "site": site, "time": time, "alarms": list(active)})


def publish_bytes(topic_name, payload_len):
    """Bytes one QoS 1 PUBLISH of this topic and payload length takes on the wire (MQTT 3.1.1,
    no properties), plus its PUBACK."""
    body = 2 + len(topic_name.encode()) + 2 + payload_len
    n = body
    rl = 1
    while n > 127:
        n >>= 7
        rl += 1
    return 1 + rl + body + PUBACK_BYTES
