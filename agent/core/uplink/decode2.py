"""The decoder of contract v2's payloads (portable). docs/mqtt.md prints this routine as the
server's decoder; a test keeps the two the same. Only the helpers above the routine differ:
`_inflate` (the board may have `deflate` instead of `zlib`) and `table_unit` (docs/mqtt.md
prints the v2 units table, agent/core/uplink/jsonv2.py UNITS, and the same lookup).

    ctx = {}                                  # one per site, kept between messages
    out = decode_v2(payload, ctx)             # data, alarm, state or series payload
"""

import json
import struct

from agent.core.uplink import compact
from agent.core.uplink.jsonv2 import table_unit


def _inflate(data):
    dec = compact._decompressor()
    if dec is None:
        raise ValueError("no zlib/deflate here to inflate a compressed payload")
    return dec(data)


# --- begin: the routine docs/mqtt.md prints ---------------------------------------------------
QUALITIES = ["good", "stale", "est"]


class Reader:
    def __init__(self, data, i=0):
        self.b, self.i = data, i

    def more(self):
        return self.i < len(self.b)

    def byte(self):
        self.i += 1
        return self.b[self.i - 1]

    def uvarint(self):
        n, shift = 0, 0
        while True:
            c = self.byte()
            n |= (c & 0x7F) << shift
            shift += 7
            if c < 0x80:
                return n

    def svarint(self):
        n = self.uvarint()
        return n >> 1 if n & 1 == 0 else -((n + 1) >> 1)

    def text(self):
        n = self.uvarint()
        if self.i + n > len(self.b):
            raise ValueError("text runs past the end")
        self.i += n
        return bytes(self.b[self.i - n : self.i]).decode()

    def value(self):
        tag = self.byte()
        if tag <= 2:
            return [None, False, True][tag]
        if tag == 3:
            return self.svarint()
        if 4 <= tag <= 10:
            return self.svarint() / 10 ** (tag - 4)
        if tag == 11:
            self.i += 8
            return struct.unpack(">d", bytes(self.b[self.i - 8 : self.i]))[0]
        if tag == 12:
            return self.text()
        if tag == 13:
            return json.loads(self.text())
        raise ValueError("unknown value tag %d" % tag)


def json_records(body):
    """A v2 JSON batch body -> flat records (site, device, metric, value, unit, time, quality,
    seq, and boot, mono and extra keys where present)."""
    out = []
    for g in body["polls"]:
        seq = g.get("seq")
        for v in g["values"]:
            rec = {"site": g.get("site", body["site"]), "device": g["device"], "metric": v[0],
                   "value": v[1], "unit": v[2] if len(v) > 2 else table_unit(v[0]),
                   "time": g.get("time"), "quality": g.get("quality", "good"),
                   "seq": seq}  # fmt: skip
            if "boot" in g or "mono" in g:
                rec["boot"], rec["mono"] = g.get("boot"), g.get("mono")
            if len(v) > 3:
                rec.update(v[3])
            if seq is not None:
                seq += 1
            out.append(rec)
    return out


def stream_state(ctx, sid):
    """What a consumer holds of one stream (one connection of the site's agent)."""
    streams = ctx.setdefault("streams", {})
    if sid not in streams:
        streams[sid] = {"m": None, "devices": {}, "series": {}, "boots": {}, "templates": {},
                        "values": {}}  # fmt: skip
        order = ctx.setdefault("order", [])
        order.append(sid)
        while len(order) > 4:  # keep the site's last few streams
            del streams[order.pop(0)]
    return streams[sid]


def take_table(body, ctx):
    """The retained series table: numbers, names and static values of a stream's series."""
    st = stream_state(ctx, body["stream"])
    for i, name in enumerate(body["devices"]):
        st["devices"][i] = name
    for i, (d, metric, unit, cls) in enumerate(body["series"]):
        st["series"][i] = (d, metric, unit, cls == "static")
    for i, v in body["static"].items():
        st["values"][int(i)] = v
    return {"v": 2, "kind": "series", "site": body["site"], "stream": body["stream"],
            "integrity": body["integrity"], "classes": body["classes"],
            "series": [[body["devices"][s[0]]] + list(s[1:]) for s in body["series"]]}


def decode_stream(r, ctx, site):
    """A data message of the stream form -> the readings it carries and implies."""
    sid = "".join("%02x" % c for c in r.b[r.i : r.i + 6])
    r.i += 6
    m, t, seq = r.uvarint(), r.uvarint(), r.uvarint()
    st = stream_state(ctx, sid)
    out = {"v": 2, "site": site, "batch": None, "kind": "data", "stream": sid, "m": m,
           "readings": [], "unresolved": [], "duplicate": False}  # fmt: skip
    if st["m"] is not None and m <= st["m"]:
        out["duplicate"] = True  # already decoded: QoS 1 may deliver a message twice
        return out
    if st["m"] is None and m != 1 or st["m"] is not None and m != st["m"] + 1:
        # Joined mid-stream or missed a message: only static values and names still hold.
        st["values"] = {i: v for i, v in st["values"].items()
                        if st["series"].get(i, (0, 0, 0, False))[3]}  # fmt: skip
        st["templates"] = {}
    st["m"] = m
    while r.more():
        tag = r.byte()
        kind, flags = tag & 0xE0, tag & 0x1F
        if kind == 0x00:
            i = r.uvarint()
            st["devices"][i] = r.text()
            continue
        if kind == 0x20:
            i, d, metric, unit = r.uvarint(), r.uvarint(), r.text(), r.text()
            st["series"][i] = (d, metric, unit, r.byte() & 1 == 1)
            continue
        if kind == 0x40:
            i = r.uvarint()
            st["boots"][i] = r.text()
            continue
        if kind not in (0x60, 0x80):
            raise ValueError("unknown entry tag 0x%02x" % tag)
        head = r.uvarint()  # a group's device, a record's series
        if flags & 0x02:
            seq += r.svarint()
        q = (flags >> 2) & 3
        quality = r.text() if q == 3 else QUALITIES[q]
        u = r.uvarint()
        if u:
            t += ((u - 1) >> 1) if (u - 1) & 1 == 0 else -(u >> 1)
        base = {"site": site, "time": t / 1000 if u else None, "quality": quality}
        if flags & 0x10:
            b, mono = r.uvarint(), r.uvarint()
            base["boot"], base["mono"] = st["boots"].get(b - 1) if b else None, mono / 1000
        if kind == 0x80:
            items = [(head, True, r.value())]
            extra = r.text()
        else:
            if flags & 0x01:
                st["templates"][head] = [r.uvarint() for _ in range(r.uvarint())]
                n = len(st["templates"][head])
            else:
                n = r.uvarint()  # readings in the poll, its list of series as last time
            tmpl = st["templates"].get(head)
            sent = {}
            for _ in range(r.uvarint()):
                pos = r.uvarint()
                sent[pos] = r.value()
            if tmpl is None or len(tmpl) != n:  # a poll whose series this consumer never saw
                out["unresolved"].append(dict(base, device=st["devices"].get(head), seq=seq,
                                              count=n))  # fmt: skip
                seq += n
                continue
            items = [(s, pos in sent, sent.get(pos)) for pos, s in enumerate(tmpl)]
            extra = ""
        for s, explicit, value in items:
            d, metric, unit, _static = st["series"].get(s, (None, None, None, False))
            rec = dict(base, device=st["devices"].get(d), metric=metric, unit=unit, seq=seq)
            seq += 1
            if explicit:
                st["values"][s] = value
            elif s in st["values"]:
                value = st["values"][s]
                rec["implied"] = True  # within the series' deadband of the value it had
            else:
                metric = None
            if metric is None:  # a series this consumer cannot name or has no value for yet
                out["unresolved"].append(rec)
                continue
            rec["value"] = value
            if extra:
                rec.update(json.loads(extra))
            out["readings"].append(rec)
    return out


def decode_v2(payload, ctx, site=None):
    """A v2 payload (data, alarm, state or series topic) -> dict. Batches come out as
    {"v": 2, "site", "batch", "kind", "readings": [record, ...]}, stream messages also with
    "stream", "m", "unresolved" (readings this consumer cannot rebuild yet) and "duplicate";
    a series table as {"v": 2, "kind": "series", ...}. ctx: a dict kept per site; site: the
    site id from the topic (stream messages do not repeat it)."""
    if payload[:1] == b"{":
        body = json.loads(payload)
    elif payload[:1] == b"\xc2" and len(payload) > 1:
        form = payload[1]
        data = _inflate(bytes(payload[2:])) if form & 1 else payload[2:]
        if form & 2 == 0:
            return decode_stream(Reader(bytes(data)), ctx, site or ctx.get("site"))
        body = json.loads(data)
    else:
        raise ValueError("not a v2 payload")
    if body.get("v") != 2:
        raise ValueError("not a v2 payload")
    if "stream" in body:
        ctx["site"] = body["site"]
        return take_table(body, ctx)
    return {"v": 2, "site": body["site"], "batch": body["batch"], "kind": body["kind"],
            "readings": json_records(body)}


# --- end: the routine docs/mqtt.md prints -----------------------------------------------------
