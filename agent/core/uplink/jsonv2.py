"""The JSON batch form of contract v2 (portable): the records of one device poll share their site,
device, time, quality and a run of sequence numbers, so they are written once per poll.

    {"v": 2, "site": s, "batch": id, "kind": "data"|"alarm"|"state",
     "polls": [{"device": d, "time": t, "seq": first, "quality": q, "boot": b, "mono": m,
                "values": [[metric, value], [metric, value, unit], [metric, value, unit, extra]]}]}

A poll's readings have the seqs first, first + 1, ... in the order of `values` (seq null: none
has one). `quality` is left out when "good"; `boot` and `mono` appear only on records made before
the clock was trusted (time null); `site` appears on a poll only when it is not the batch's. The
unit is left out when it is the one UNITS gives the metric ("" for a name UNITS lacks) and no
extra keys follow; `extra` holds the record's other keys (alarm events, thinned aggregates).
Times are rounded to the millisecond.

UNITS is part of the contract, frozen with v2: the registry's units when v2 was made. A name the
registry gains later, or a unit it changes, goes with its unit written out, so a consumer that
knows only this table is never wrong (a test keeps every row equal to the registry's).
"""

import json

VERSION = 2
# unit: the metric names (registry patterns: <n>, <name> stand for one dotted component) that have
# it unless a reading says otherwise. docs/mqtt.md prints this table for the decoder.
UNITS = (
    ("V", "input.voltage input.voltage.l<n> input.voltage.fault output.voltage "
          "output.voltage.l<n> ups.rating.voltage ups.rating.battery_voltage battery.voltage "
          "battery.cell.<n>.voltage dc.voltage solar.voltage load.voltage phase.<n>.voltage"),
    ("Hz", "input.frequency output.frequency ups.rating.frequency"),
    ("A", "output.current ups.rating.current battery.current dc.current rectifier.current "
          "rectifier.<n>.current solar.current charger.current load.current phase.<n>.current "
          "outlet.<n>.current bank.<n>.current"),
    ("W", "output.power battery.power solar.power outlet.<n>.power phase.<n>.power"),
    ("%", "ups.load ups.load.l<n> battery.charge rectifier.utilisation router.cpu router.memory "
          "probe.<name>.loss site.battery_charge agent.cpu agent.memory agent.disk_used "
          "agent.queue.used"),
    ("C", "ups.temperature battery.temperature battery.cell.<n>.temperature device.temperature "
          "agent.temperature"),
    ("s", "ups.seconds_on_battery battery.runtime device.uptime site.runtime site.on_battery_s "
          "agent.uptime"),
    ("bit/s", "if.<name>.in_bps if.<name>.out_bps"),
    ("ms", "probe.<name>.latency"),
    ("B", "agent.rss agent.heap_free agent.queue.bytes"),
)  # fmt: skip
_EXACT = {}
_PATTERNS = []  # (parts, unit)
for _unit, _names in UNITS:
    for _n in _names.split():
        if "<" in _n:
            _PATTERNS.append((_n.split("."), _unit))
        else:
            _EXACT[_n] = _unit
del _unit, _names, _n


def table_unit(metric):
    """The unit UNITS gives a metric name, "" when it gives none."""
    unit = _EXACT.get(metric)
    if unit is not None:
        return unit
    parts = metric.split(".")
    for pat, unit in _PATTERNS:
        if len(pat) == len(parts):
            for p, q in zip(pat, parts):
                if not _component(p, q):
                    break
            else:
                return unit
    return ""


def _component(p, q):
    """One dotted component against a pattern's: literal, or `pre<x>post` where <x> is at least
    one character."""
    if "<" not in p:
        return p == q
    pre, post = p[: p.index("<")], p[p.index(">") + 1 :]
    return len(q) > len(pre) + len(post) and q.startswith(pre) and q.endswith(post)
CORE = ("site", "device", "metric", "value", "unit", "time", "quality", "seq", "boot", "mono")


def _ms(t):
    return None if t is None else int(round(t * 1000))


def _key(site, rec):
    """What the records of one group share (seq aside)."""
    return (
        rec.get("site", site),
        rec.get("device"),
        rec.get("quality", "good"),
        _ms(rec.get("time")),
        rec.get("boot"),
        _ms(rec.get("mono")),
    )


def groups(site, records, split_extra=False):
    """Runs of consecutive records that share site, device, quality, time (to the millisecond),
    boot stamp, and whose seqs follow one another. With split_extra, a record with keys beyond
    CORE is a group of its own. Returns [(key, [record, ...]), ...]."""
    out = []
    cur = None
    key = None
    nxt = None
    for rec in records:
        k = _key(site, rec)
        seq = rec.get("seq")
        odd = split_extra and extra_of(rec)
        if cur is not None and not odd and k == key and seq is not None and seq == nxt:
            cur.append(rec)
            nxt = seq + 1
            continue
        cur = [rec]
        key = k
        out.append((k, cur))
        nxt = None if seq is None or odd else seq + 1
        if odd:
            cur = None
    return out


def extra_of(rec):
    extra = None
    for k in rec:
        if k not in CORE:
            if extra is None:
                extra = {}
            extra[k] = rec[k]
    return extra


def encode(site, batch_id, records, kind="data"):
    polls = []
    for key, recs in groups(site, records):
        g = {"device": key[1], "time": None if key[3] is None else key[3] / 1000}
        g["seq"] = recs[0].get("seq")
        if key[2] != "good":
            g["quality"] = key[2]
        if key[4] is not None or key[5] is not None:
            g["boot"] = key[4]
            g["mono"] = None if key[5] is None else key[5] / 1000
        if key[0] != site:
            g["site"] = key[0]
        values = []
        for r in recs:
            unit = r.get("unit", "")
            extra = extra_of(r)
            if extra:
                values.append([r.get("metric"), r.get("value"), unit, extra])
            elif unit != table_unit(str(r.get("metric"))):
                values.append([r.get("metric"), r.get("value"), unit])
            else:
                values.append([r.get("metric"), r.get("value")])
        g["values"] = values
        polls.append(g)
    body = {"v": VERSION, "site": site, "batch": batch_id, "kind": kind, "polls": polls}
    return json.dumps(body, separators=(",", ":")).encode()
