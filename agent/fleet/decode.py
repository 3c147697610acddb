"""The fleet consumer's one door to the contract (docs/mqtt.md): topics in, plain dicts out.

Everything the consumer knows about payload forms is here, so that a new contract version is one
change in this file: `decode(kind, payload, ctx)` picks the form by the payload (JSON or compact
batches via the contract's own decoder, agent/core/uplink/contract.py) and `ctx` is a per-site
dict a stateful form may keep (a v2 birth that numbers the series, say); v1 does not use it.

What comes out:
    batch   {"kind": "data"|"alarm"|"state", "readings": [record, ...]}   (records as published)
    status  {"state": "online"|"offline", "reason", "time", "session", "agent",
             "name", "site_kind", "location": {lat, lon, commune, province, address}}
    alarms  {"time", "alarms": [alarm event, ...]}
Anything else raises DecodeError naming what was wrong; the caller counts it and goes on.
"""

import json

from agent.core.uplink import contract

DEFAULT_PREFIX = "site-agent/v1"
BATCH_KINDS = contract.BATCH_KINDS  # data, alarm, state
RETAINED_KINDS = ("status", "alarms", "state")
LIVE_KINDS = ("data", "alarm")
LOCATION_KEYS = ("lat", "lon", "commune", "province", "address")
MAX_TEXT = 200  # a name or place longer than this is cut: it is shown, not trusted


class DecodeError(ValueError):
    """A payload that is not what the contract says for its topic."""


def split_topic(topic, prefix):
    """`<prefix>/<site>/<kind>` -> (site, kind), or None for a topic that is not ours."""
    if not topic.startswith(prefix + "/"):
        return None
    rest = topic[len(prefix) + 1 :]
    parts = rest.split("/")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        return None
    return parts[0], parts[1]


def decode(kind, payload, ctx=None):
    """One message of topic kind `kind` -> a dict as described above (DecodeError if bad)."""
    if kind in BATCH_KINDS:
        try:
            body = contract.decode_batch(bytes(payload))
        except ValueError as e:
            raise DecodeError(str(e)) from None
        if body.get("kind") not in BATCH_KINDS:
            raise DecodeError("batch of unknown kind %r" % (body.get("kind"),))
        readings = [r for r in body["readings"] if isinstance(r, dict)]
        return {"kind": body["kind"], "readings": readings}
    if kind == "status":
        return _status(_json_object(payload, kind))
    if kind == "alarms":
        body = _json_object(payload, kind)
        alarms = body.get("alarms")
        if not isinstance(alarms, list):
            raise DecodeError("alarms message without an alarms list")
        return {"time": _number(body.get("time")),
                "alarms": [a for a in alarms if isinstance(a, dict) and isinstance(
                    a.get("alarm"), str)]}  # fmt: skip
    raise DecodeError("no decoder for topic kind %r" % (kind,))


def _json_object(payload, kind):
    if payload[:1] == b"":
        raise DecodeError("empty %s message" % kind)
    try:
        body = json.loads(bytes(payload))
    except ValueError as e:
        raise DecodeError("%s message is not JSON: %s" % (kind, e)) from None
    if not isinstance(body, dict):
        raise DecodeError("%s message is not a JSON object" % kind)
    if body.get("v") != contract.CONTRACT_VERSION:
        raise DecodeError("%s message of contract version %r, expected %d"
                          % (kind, body.get("v"), contract.CONTRACT_VERSION))  # fmt: skip
    return body


def _status(body):
    state = body.get("state")
    if state not in (contract.ONLINE, contract.OFFLINE):
        raise DecodeError("status with state %r (expected online or offline)" % (state,))
    out = {
        "state": state,
        "reason": _text(body.get("reason")),
        "time": _number(body.get("time")),
        "session": _text(body.get("session")),
        "agent": _text(body.get("agent")),
        "name": _text(body.get("name")),
        "site_kind": _text(body.get("kind")),
        "location": None,
    }
    loc = body.get("location")
    if isinstance(loc, dict):
        clean = {}
        for k in LOCATION_KEYS:
            v = loc.get(k)
            if k in ("lat", "lon"):
                v = _number(v)
                limit = 90 if k == "lat" else 180
                if v is not None and -limit <= v <= limit:
                    clean[k] = v
            elif _text(v):
                clean[k] = _text(v)
        out["location"] = clean
    return out


def _number(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if v != v or v in (float("inf"), float("-inf")):
        return None
    return v


def _text(v):
    if not isinstance(v, str) or not v:
        return None
    return v[:MAX_TEXT]
