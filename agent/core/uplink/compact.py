"""The compact batch form of contract v1 (portable): batched, packed and compressed for metered
links. docs/mqtt.md holds the server's decoding routine; `decode` here is the same routine.

Layout:
    byte 0   0xC1                 (compact form, contract version 1)
    byte 1   0 = body is plain, 1 = body is zlib-wrapped deflate (RFC 1950)
    byte 2.. body: UTF-8 JSON   {"s": site, "b": batch, "k": kind, "t0": ms, "q0": seq,
                                 "D": [device, ...], "M": [metric, ...], "U": [unit, ...],
                                 "r": [[d, m, u, value, dt, q, ds] or [..., x], ...]}
A row's device, metric and unit are indexes into D, M and U; `dt` is the time in milliseconds
after t0 (null when the record has no time); `q` is 0 good, 1 stale, 2 est (or the quality text if
it is another); `ds` is the seq minus the previous row's seq (the first row's minus q0, so 0);
`x` (optional) is a dict of the record's other keys (alarm, state, severity, ...).
Trade-off: times are kept to the millisecond, which is finer than any poll.

The board may lack zlib; MicroPython 1.21+ has `deflate` (compression only where the firmware
enables it). Without either, byte 1 is 0 and the body goes uncompressed: the server handles both.
"""

import json

MAGIC = 0xC1
PLAIN = 0
ZLIB = 1
QUALITY_CODES = ("good", "stale", "est")
_CORE = ("site", "device", "metric", "value", "unit", "time", "quality", "seq")


def _compressor():
    try:
        import zlib

        return zlib.compress
    except ImportError:
        pass
    try:
        import io

        import deflate

        def comp(data):
            buf = io.BytesIO()
            d = deflate.DeflateIO(buf, deflate.ZLIB)
            d.write(data)
            d.close()
            return buf.getvalue()

        comp(b"x")  # firmware without compression support raises here
        return comp
    except Exception:
        return None


_compress = _compressor()


def _decompressor():
    try:
        import zlib

        return zlib.decompress
    except ImportError:
        pass
    try:
        import io

        import deflate

        return lambda data: deflate.DeflateIO(io.BytesIO(data), deflate.ZLIB).read()
    except ImportError:
        return None


def _index(table, where, value):
    i = where.get(value)
    if i is None:
        i = len(table)
        where[value] = i
        table.append(value)
    return i


def encode(site, batch_id, records, kind="data", compress=True):
    """Compact payload (bytes) of a batch of record dicts."""
    devs, mets, units = [], [], []
    di, mi, ui = {}, {}, {}
    rows = []
    t0 = None
    q0 = None
    for rec in records:
        t = rec.get("time")
        if t is not None and t0 is None:
            t0 = int(round(t * 1000))
        if q0 is None and rec.get("seq") is not None:
            q0 = rec["seq"]
    prev = q0
    for rec in records:
        t = rec.get("time")
        q = rec.get("quality", "good")
        qc = QUALITY_CODES.index(q) if q in QUALITY_CODES else q
        seq = rec.get("seq")
        ds = None if seq is None or prev is None else seq - prev
        if seq is not None:
            prev = seq
        row = [
            _index(devs, di, rec.get("device")),
            _index(mets, mi, rec.get("metric")),
            _index(units, ui, rec.get("unit", "")),
            rec.get("value"),
            None if t is None else int(round(t * 1000)) - t0,
            qc,
            ds,
        ]
        extra = {}
        for k in rec:
            if k not in _CORE or (k == "site" and rec[k] != site):
                extra[k] = rec[k]
        if extra:
            row.append(extra)
        rows.append(row)
    body = {"s": site, "b": batch_id, "k": kind, "t0": t0, "q0": q0}
    body["D"] = devs
    body["M"] = mets
    body["U"] = units
    body["r"] = rows
    raw = json.dumps(body, separators=(",", ":")).encode()
    if compress and _compress is not None:
        return bytes((MAGIC, ZLIB)) + _compress(raw)
    return bytes((MAGIC, PLAIN)) + raw


def decode(payload):
    """A compact payload -> the JSON form's dict {"v", "site", "batch", "kind", "readings"}.
    Raises ValueError for anything malformed."""
    if len(payload) < 2 or payload[0] != MAGIC:
        raise ValueError("not a compact v1 batch")
    if payload[1] == ZLIB:
        dec = _decompressor()
        if dec is None:
            raise ValueError("no zlib/deflate here to decode a compressed batch")
        try:
            raw = dec(payload[2:])
        except Exception as e:
            raise ValueError("compressed body is corrupt: %s" % e) from e
    elif payload[1] == PLAIN:
        raw = payload[2:]
    else:
        raise ValueError("unknown compact encoding %d" % payload[1])
    try:
        b = json.loads(raw)
        site, t0, seq = b["s"], b["t0"], b["q0"]
        out = []
        for row in b["r"]:
            dt, q, ds = row[4], row[5], row[6]
            if ds is not None:
                seq = seq + ds
            rec = {
                "site": site,
                "device": b["D"][row[0]],
                "metric": b["M"][row[1]],
                "value": row[3],
                "unit": b["U"][row[2]],
                "time": None if dt is None else (t0 + dt) / 1000,
                "quality": QUALITY_CODES[q] if isinstance(q, int) else q,
                "seq": None if ds is None else seq,
            }
            if len(row) > 7:
                rec.update(row[7])
            out.append(rec)
        return {"v": 1, "site": site, "batch": b["b"], "kind": b["k"], "readings": out}
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        raise ValueError("malformed compact batch: %r" % (e,)) from e
