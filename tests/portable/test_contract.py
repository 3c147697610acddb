"""Contract v1: topics, JSON and compact batch forms, status and wire accounting (portable)."""

import json

from agent.core.uplink import compact, contract

from support import raises


def _records(n=10, t=1760000000.125, seq=41):
    out = []
    for i in range(n):
        out.append(
            {
                "site": "bts-7",
                "device": "ups-1" if i % 2 else "dc-plant",
                "metric": ("battery.voltage", "battery.charge", "ups.status")[i % 3],
                "value": (53.61 + i, 97, "OL CHRG")[i % 3],
                "unit": ("V", "%", "")[i % 3],
                "time": None if i == 3 else t + i * 30,
                "quality": ("good", "stale", "est", "odd")[i % 4],
                "seq": seq + i + (5 if i > 6 else 0),
            }
        )
    return out


def test_topics():
    assert contract.topic("site-agent/v1", "bts-7", "data") == "site-agent/v1/bts-7/data"
    for kind in ("data", "alarm", "state", "alarms", "status", "cmd", "reply"):
        assert kind in contract.TOPIC_KINDS


def test_json_batch_round_trip_keeps_every_field():
    recs = _records()
    payload = contract.encode_batch("bts-7", 3, recs)
    assert payload[:1] == b"{"
    body = contract.decode_batch(payload)
    assert body["v"] == 1 and body["batch"] == 3 and body["kind"] == "data"
    assert body["readings"] == recs


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for k in x:
            if k == "time" and x[k] is not None:
                assert abs(x[k] - y[k]) < 0.0006, (x[k], y[k])
            else:
                assert x[k] == y[k], (k, x[k], y[k])
        assert sorted(x) == sorted(y)


def test_compact_round_trip():
    recs = _records(25)
    for comp in (True, False):
        payload = compact.encode("bts-7", 9, recs, "data", compress=comp)
        assert payload[0] == 0xC1
        body = contract.decode_batch(payload)
        assert body["site"] == "bts-7" and body["batch"] == 9 and body["kind"] == "data"
        _same(recs, body["readings"])


def test_compact_carries_alarm_event_keys_and_foreign_site():
    ev = {"site": "bts-7", "device": "dc-plant", "metric": "battery.voltage", "value": 45.9,
          "unit": "V", "time": 1760000000.5, "quality": "good", "seq": 7,
          "alarm": "BATTERY_LOW/dc-plant/battery.voltage", "event": "raise", "rule": "BATTERY_LOW",
          "severity": "major", "values": [46.1, 45.9]}  # fmt: skip
    other = dict(ev, site="bts-8", seq=8)
    payload = contract.encode_batch("bts-7", 1, [ev, other], "alarm", "compact")
    body = contract.decode_batch(payload)
    assert body["kind"] == "alarm"
    _same([ev, other], body["readings"])
    assert contract.is_alarm_record(body["readings"][0])


def test_compact_is_smaller_than_json():
    recs = _records(100)
    j = contract.encode_batch("bts-7", 1, recs)
    c = contract.encode_batch("bts-7", 1, recs, fmt="compact")
    assert len(c) * 3 < len(j), (len(c), len(j))


def test_empty_and_seqless_batches():
    body = compact.decode(compact.encode("s", 1, []))
    assert body["readings"] == []
    rec = {"site": "s", "device": "d", "metric": "m", "value": 1, "unit": "", "time": None,
           "quality": "good", "seq": None}  # fmt: skip
    assert compact.decode(compact.encode("s", 1, [rec]))["readings"] == [rec]


def test_bad_batches_raise_value_error():
    for bad in (b"", b"{", b"[1,2]", b'{"v":2,"readings":[]}', b'{"v":1}', b"\xc1",
                b"\xc1\x01not-zlib", b"\xc1\x07{}", b"\xc1\x00{}", b'\xc1\x00{"s":1}',
                b"\xff\xfe"):  # fmt: skip
        raises(ValueError, contract.decode_batch, bad)


def test_truncated_compact_batch_raises():
    payload = contract.encode_batch("bts-7", 1, _records(30), fmt="compact")
    for cut in (3, len(payload) // 2, len(payload) - 1):
        raises(ValueError, contract.decode_batch, payload[:cut])


def test_status_payloads():
    body = json.loads(contract.status_payload("offline", "connection lost", session="ab12"))
    assert body == {"v": 1, "state": "offline", "reason": "connection lost", "session": "ab12"}
    body = json.loads(contract.status_payload("online", version="0.1.0", boot=3, time=5.0))
    assert body == {"v": 1, "state": "online", "agent": "0.1.0", "boot": 3, "time": 5.0}


def test_status_payloads_carry_the_sites_name_kind_and_location():
    site = {"id": "bts-7", "kind": "bts", "name": "Tinh Ky BTS", "clock": "ntp",
            "location": {"lat": 15.2463, "lon": 108.8069, "address": None, "commune": "Tinh Ky",
                         "province": "Quang Ngai"}}  # fmt: skip
    info = contract.site_info(site)
    assert info == {"name": "Tinh Ky BTS", "kind": "bts",
                    "location": {"lat": 15.2463, "lon": 108.8069, "commune": "Tinh Ky",
                                 "province": "Quang Ngai"}}  # fmt: skip
    will = json.loads(contract.status_payload("offline", "connection lost", info=info))
    assert will["state"] == "offline" and will["reason"] == "connection lost"
    assert will["name"] == "Tinh Ky BTS" and will["location"]["commune"] == "Tinh Ky"
    birth = json.loads(contract.status_payload("online", version="0.1.0", time=5.0, info=info))
    assert birth["kind"] == "bts" and birth["location"]["lat"] == 15.2463
    # A config without name or location adds nothing.
    bare = contract.site_info({"id": "s", "kind": "wifi", "location": {"lat": None}})
    assert bare == {"kind": "wifi"}


def test_alarms_payload():
    body = json.loads(contract.alarms_payload("s", [{"alarm": "X"}], 1.5))
    assert body == {"v": 1, "site": "s", "time": 1.5, "alarms": [{"alarm": "X"}]}


def test_publish_bytes_counts_headers_and_puback():
    # 5-byte topic, 10-byte payload: 1 + 1 + (2 + 5 + 2 + 10) + 4
    assert contract.publish_bytes("a/b/c", 10) == 25
    # A remaining length of 200 needs two bytes.
    assert contract.publish_bytes("a/b/c", 191) == 1 + 2 + 200 + 4
