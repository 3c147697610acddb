"""The compact form of contract v2 (portable): report by exception on a numbered, stateful stream
for the data topic; a wrapped v2 JSON body for the others. docs/mqtt.md is the specification and
holds the decoder (agent/core/uplink/decode2.py is the same routine).

    st = Stream(stream_id, site, integrity=600)       # one per broker session
    payload, done = st.encode(batch_id, records, now) # now: monotonic s; done() once published
    table = st.table_payload() if st.table_dirty      # the retained series table ("series" topic)

Invariants:
- the encoder's picture of what the consumer holds (series numbers, templates, last values) only
  moves when done() says the message left; a message built and then dropped (a budget stop, a
  lost link) changes nothing, and message numbers stay gapless;
- a value goes on the wire when the stream has not carried the series yet, when it left the
  series' deadband around the value last carried (agent/core/uplink/deadband.py), or when the
  integrity period has passed since it was last carried (then the device's whole poll goes, with
  its list of series); static series (identity, ratings) go only on change. The integrity period
  counts sending time (monotonic), not the records' times: a backlog drained after an outage
  carries old records, and what a consumer needs is to be in step again within the period;
- explicit values are exact; a reading left out is within its class's deadband of the value the
  consumer holds for its series, which is the value last carried in this stream.
"""

import json
import struct

from agent.core.uplink import compact, deadband
from agent.core.uplink.jsonv2 import extra_of, groups

MAGIC = 0xC2
STREAM, STREAM_Z, JSON, JSON_Z = 0, 1, 2, 3  # byte 1: the form (bit 0: body deflated)
# Entry tags: high 3 bits the entry type, low 5 bits flags.
T_DEVICE, T_SERIES, T_BOOT, T_GROUP, T_RECORD = 0x00, 0x20, 0x40, 0x60, 0x80
F_TEMPLATE, F_SEQ, F_BOOT = 0x01, 0x02, 0x10  # quality in bits 2-3
QUALITIES = ("good", "stale", "est")
STATIC_FLAG = 0x01  # in a series definition
_INF = float("inf")


def uvarint(out, n):
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def zigzag(n):
    return n * 2 if n >= 0 else -n * 2 - 1


def text(out, s):
    b = s.encode()
    uvarint(out, len(b))
    out.extend(b)


def value(out, v):
    """Tags: 0 null, 1 false, 2 true, 3 int, 4+k a float written as an integer over 10**k
    (k = 0..6, when that is exact), 11 float64, 12 text, 13 JSON."""
    if v is None:
        out.append(0)
    elif v is False:
        out.append(1)
    elif v is True:
        out.append(2)
    elif isinstance(v, int):
        out.append(3)
        uvarint(out, zigzag(v))
    elif isinstance(v, float):
        if v == v and v != _INF and v != -_INF and -1e15 < v < 1e15:
            p = 1
            for k in range(7):
                r = int(round(v * p))
                if r / p == v:
                    out.append(4 + k)
                    uvarint(out, zigzag(r))
                    return
                p *= 10
        out.append(11)
        out.extend(struct.pack(">d", v))
    elif isinstance(v, str):
        out.append(12)
        text(out, v)
    else:
        out.append(13)
        text(out, json.dumps(v))


def _ms(t):
    return None if t is None else int(round(t * 1000))


class _Pending:
    """What one message adds to the stream's picture; applied by done()."""

    def __init__(self, st):
        self.devices = []
        self.series = []  # (device idx, metric, unit, class)
        self.boots = []
        self.templates = {}
        self.values = {}  # series idx -> (value, monotonic time carried)
        self.dev_at = dict(st.dev_idx)
        self.ser_at = dict(st.ser_idx)
        self.boot_at = dict(st.boot_idx)


class Stream:
    def __init__(self, stream_id, site, integrity=600.0, compress=True):
        self.id = bytes(stream_id)
        self.site = site
        self.integrity = integrity
        self.compress = compress
        self.m = 0  # number of the last message that left
        self.devices = []
        self.series = []  # [(device idx, metric, unit, class)]
        self.boots = []
        self.dev_idx = {}
        self.ser_idx = {}
        self.boot_idx = {}
        self.templates = {}  # device idx -> tuple of series idx of its last poll carried
        self.values = {}  # series idx -> (last value carried, monotonic time it was carried)
        self.table_dirty = False

    def hex_id(self):
        return "".join("%02x" % b for b in self.id)

    # --- numbering (into the pending picture) ----------------------------------------------
    def _device(self, P, out, name):
        i = P.dev_at.get(name)
        if i is None:
            i = len(self.devices) + len(P.devices)
            P.dev_at[name] = i
            P.devices.append(name)
            out.append(T_DEVICE)
            uvarint(out, i)
            text(out, name)
        return i

    def _series(self, P, out, d, metric, unit):
        key = (d, metric, unit)
        i = P.ser_at.get(key)
        if i is None:
            i = len(self.series) + len(P.series)
            cls = deadband.class_of(metric, unit)
            P.ser_at[key] = i
            P.series.append((d, metric, unit, cls))
            out.append(T_SERIES)
            uvarint(out, i)
            uvarint(out, d)
            text(out, metric)
            text(out, unit)
            out.append(STATIC_FLAG if cls == deadband.STATIC else 0)
        return i

    def _class(self, P, i):
        n = len(self.series)
        return (self.series[i] if i < n else P.series[i - n])[3]

    def _boot(self, P, out, boot):
        if boot is None:
            return 0
        i = P.boot_at.get(boot)
        if i is None:
            i = len(self.boots) + len(P.boots)
            P.boot_at[boot] = i
            P.boots.append(boot)
            out.append(T_BOOT)
            uvarint(out, i)
            text(out, str(boot))
        return i + 1

    def _last(self, P, i):
        got = P.values.get(i)
        return got if got is not None else self.values.get(i)

    # --- encoding ---------------------------------------------------------------------------
    def encode(self, batch_id, records, now):
        """(payload, done) for a batch of routine records at monotonic time `now`; done()
        records that the payload left."""
        P = _Pending(self)
        P.now = now
        body = bytearray()
        first_t = None
        first_q = None
        for r in records:
            if first_t is None and r.get("time") is not None:
                first_t = _ms(r["time"])
            if first_q is None and r.get("seq") is not None:
                first_q = r["seq"]
        cur = [first_q or 0, first_t or 0]  # next expected seq, last time (ms)
        for key, recs in groups(self.site, records, split_extra=True):
            one = recs[0]
            if len(recs) == 1 and (extra_of(one) or key[0] != self.site or one.get("seq") is None):
                self._record(P, body, key, recs[0], cur)
            else:
                self._group(P, body, key, recs, cur)
        head = bytearray((MAGIC, STREAM))
        head.extend(self.id)
        m = self.m + 1
        uvarint(head, m)
        uvarint(head, first_t or 0)
        uvarint(head, first_q or 0)
        payload = self._pack(head, body)

        def done():
            self._apply(P, m)

        return payload, done

    def _pack(self, head, body):
        plain = bytes(head) + bytes(body)
        if self.compress and compact._compress is not None and len(plain) > 120:
            z = compact._compress(plain[2:])
            if len(z) + 2 < len(plain):
                return bytes((MAGIC, STREAM_Z)) + z
        return plain

    def _write_time(self, P, out, key, seq, qc, cur, stamp_out):
        if seq != cur[0]:
            uvarint(stamp_out, zigzag(seq - cur[0]))
        if qc == 3:
            text(stamp_out, str(key[2]))
        t = key[3]
        if t is None:
            stamp_out.append(0)
        else:
            uvarint(stamp_out, zigzag(t - cur[1]) + 1)
            cur[1] = t
        if key[4] is not None or key[5] is not None:
            uvarint(stamp_out, self._boot(P, out, key[4]))
            uvarint(stamp_out, key[5] or 0)

    def _due(self, P, i, last):
        """The series has never been carried, or not for the integrity period (static series:
        only never)."""
        if last is None:
            return True
        if self._class(P, i) == deadband.STATIC:
            return False
        d = P.now - last[1]
        return d >= self.integrity or d < 0

    def _group(self, P, out, key, recs, cur):
        d = self._device(P, out, key[1])
        idx = []
        for r in recs:
            idx.append(self._series(P, out, d, r.get("metric"), r.get("unit", "")))
        tmpl = tuple(idx)
        known = P.templates.get(d) or self.templates.get(d)
        refresh = False
        for i in idx:
            if self._due(P, i, self._last(P, i)):
                refresh = True
                break
        explicit = []
        for pos in range(len(recs)):
            i = idx[pos]
            v = recs[pos].get("value")
            last = self._last(P, i)
            cls = self._class(P, i)
            if last is None or not deadband.within(cls, last[0], v):
                explicit.append(pos)
            elif refresh and cls != deadband.STATIC:
                explicit.append(pos)
        seq = recs[0].get("seq")
        seq = cur[0] if seq is None else seq
        q = key[2]
        qc = QUALITIES.index(q) if q in QUALITIES else 3
        tag = T_GROUP | (qc << 2)
        if seq != cur[0]:
            tag |= F_SEQ
        if key[4] is not None or key[5] is not None:
            tag |= F_BOOT
        new_tmpl = refresh or known != tmpl
        if new_tmpl:
            tag |= F_TEMPLATE
        fields = bytearray()
        self._write_time(P, out, key, seq, qc, cur, fields)
        out.append(tag)
        uvarint(out, d)
        out.extend(fields)
        if new_tmpl:
            uvarint(out, len(idx))
            for i in idx:
                uvarint(out, i)
            P.templates[d] = tmpl
        else:
            uvarint(out, len(idx))
        uvarint(out, len(explicit))
        for pos in explicit:
            uvarint(out, pos)
            v = recs[pos].get("value")
            value(out, v)
            P.values[idx[pos]] = (v, P.now)
        cur[0] = seq + len(recs)

    def _record(self, P, out, key, rec, cur):
        """One record on its own, every field explicit: thinned aggregates, records with keys
        beyond the core ones, a foreign site."""
        d = self._device(P, out, key[1])
        i = self._series(P, out, d, rec.get("metric"), rec.get("unit", ""))
        seq = rec.get("seq")
        seq = cur[0] if seq is None else seq
        q = key[2]
        qc = QUALITIES.index(q) if q in QUALITIES else 3
        tag = T_RECORD | (qc << 2)
        if seq != cur[0]:
            tag |= F_SEQ
        if key[4] is not None or key[5] is not None:
            tag |= F_BOOT
        fields = bytearray()
        self._write_time(P, out, key, seq, qc, cur, fields)
        out.append(tag)
        uvarint(out, i)
        out.extend(fields)
        v = rec.get("value")
        value(out, v)
        extra = extra_of(rec) or {}
        if key[0] != self.site:
            extra["site"] = key[0]
        if rec.get("seq") is None:
            extra["seq"] = None
        text(out, json.dumps(extra) if extra else "")
        P.values[i] = (v, P.now)
        cur[0] = seq + 1

    def _apply(self, P, m):
        static_changed = False
        for name in P.devices:
            self.dev_idx[name] = len(self.devices)
            self.devices.append(name)
        for s in P.series:
            self.ser_idx[(s[0], s[1], s[2])] = len(self.series)
            self.series.append(s)
        for b in P.boots:
            self.boot_idx[b] = len(self.boots)
            self.boots.append(b)
        self.templates.update(P.templates)
        for i in P.values:
            if self.series[i][3] == deadband.STATIC:
                old = self.values.get(i)
                if old is None or old[0] != P.values[i][0]:
                    static_changed = True
            self.values[i] = P.values[i]
        self.m = m
        if P.devices or P.series or static_changed:
            self.table_dirty = True

    # --- the retained series table -----------------------------------------------------------
    def table_payload(self, compress=True):
        """(payload, done) of the series table as it stands: every series numbered so far and the
        value of every static series."""
        static = {}
        for i in range(len(self.series)):
            if self.series[i][3] == deadband.STATIC and i in self.values:
                static[str(i)] = self.values[i][0]
        body = {"v": 2, "site": self.site, "stream": self.hex_id(), "m": self.m,
                "integrity": self.integrity, "devices": self.devices,
                "series": [list(s) for s in self.series], "static": static,
                "classes": deadband.table()}  # fmt: skip
        payload = wrap_json(body, compress)

        def done():
            self.table_dirty = False

        return payload, done


def wrap_json(body, compress=True):
    """A v2 JSON body in the compact form's envelope (see wrap_payload)."""
    return wrap_payload(json.dumps(body, separators=(",", ":")).encode(), compress)


def wrap_payload(raw, compress=True):
    """Encoded v2 JSON in the compact form's envelope: 0xC2, the form, the body (deflated when
    that is smaller and the platform can deflate)."""
    if compress and compact._compress is not None:
        z = compact._compress(raw)
        if len(z) < len(raw):
            return bytes((MAGIC, JSON_Z)) + z
    return bytes((MAGIC, JSON)) + raw
