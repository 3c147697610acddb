"""The upstream MQTT contract: topics and payloads (portable; docs/mqtt.md is its prose).

Version 1. Topics, under a configurable prefix (default "site-agent/v1"):
    <prefix>/<site>/data      a batch of readings, QoS 1, not retained
    <prefix>/<site>/alarm     a batch of alarm events, QoS 1, not retained
    <prefix>/<site>/status    birth and last will, retained: {"state": "online"|"offline", ...}
    <prefix>/<site>/cmd       commands to the agent (the agent subscribes)
    <prefix>/<site>/reply     replies to commands
The JSON form of a batch:
    {"v": 1, "site": "<site>", "batch": <batch id>, "readings": [<record>, ...]}
where a record is Reading.to_dict(): site, device, metric, value, unit, time, quality, seq.
"""

import json

CONTRACT_VERSION = 1


def topic(prefix, site, kind):
    return "%s/%s/%s" % (prefix, site, kind)


def encode_batch(site, batch_id, records):
    body = {"v": CONTRACT_VERSION, "site": site, "batch": batch_id, "readings": records}
    return json.dumps(body, separators=(",", ":")).encode()


def decode_batch(payload):
    """Parse a JSON batch (the operations centre's side, and our tests). Raises ValueError."""
    body = json.loads(payload)
    if not isinstance(body, dict) or body.get("v") != CONTRACT_VERSION:
        raise ValueError("not a v%d batch" % CONTRACT_VERSION)
    readings = body.get("readings")
    if not isinstance(readings, list):
        raise ValueError("batch without a readings list")
    return body


def status_payload(state, reason=None, version=None, boot=None):
    body = {"v": CONTRACT_VERSION, "state": state}
    if reason:
        body["reason"] = reason
    if version:
        body["agent"] = version
    if boot is not None:
        body["boot"] = boot
    return json.dumps(body, separators=(",", ":")).encode()
