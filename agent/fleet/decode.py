"""The fleet consumer's one door to the contract (docs/mqtt.md): topics in, plain dicts out.

Everything the consumer knows about payload forms is here. Every payload goes through the
contract's one entry point, `contract.decode(kind, payload, ctx, site)`
(agent/core/uplink/contract.py), which reads contract v1 (JSON and compact) and v2 (JSON, and
the compact form's report-by-exception stream). `ctx` is a dict kept per site: the v2 compact
stream's decoding state (the series table from the retained `series` topic, each stream's
message number, device templates and the values it last carried); v1 and v2 JSON do not use it.

What comes out:
    batch   {"kind": "data"|"alarm"|"state", "readings": [record, ...], "v": 1|2,
             "form": "json"|"compact"|"stream", "unresolved": [reading, ...],
             "stream": id or None, "duplicate": bool}
            records as published (v1-shaped); `unresolved`: v2 compact readings this consumer
            cannot rebuild yet (it joined the stream mid-way or missed a message): their device,
            time and seq are known, their value is not, and their metric only when the series
            table named it (a whole poll without it: `count` readings from `seq` on);
            `duplicate`: a stream message delivered twice (QoS 1), already decoded
    series  {"kind": "series", "stream", "integrity": seconds, "series": [[device, metric,
             unit, class], ...]}   (v2 compact: the stream's series table, retained)
    status  {"state": "online"|"offline", "reason", "time", "session", "agent",
             "name", "site_kind", "location": {lat, lon, commune, province, address}}
    alarms  {"time", "alarms": [alarm event, ...]}
Anything else raises DecodeError naming what was wrong; the caller counts it and goes on.

Memory: a v2 compact site's context holds its stream's series definitions (device, metric,
unit, static) and device templates, the same few hundred names and lists across thousands of
sites. After a message that changed them, shared_names() replaces each by one shared equal
copy (`SHARED`), which halves a context (about 20 KB to 9 KB for the example configs' devices):
the decoder's state is the routine docs/mqtt.md prints, and only equal immutable values are
swapped in, so what it decodes is unchanged.
"""

import zlib

from agent.core.uplink import contract

PREFIXES = ("site-agent/v1", "site-agent/v2")  # read side by side: a fleet moves site by site
DEFAULT_PREFIX = PREFIXES[0]
BATCH_KINDS = contract.BATCH_KINDS  # data, alarm, state
SERIES = contract.KIND_SERIES
RETAINED_KINDS = ("status", "alarms", "state", SERIES)
LIVE_KINDS = ("data", "alarm")
LOCATION_KEYS = ("lat", "lon", "commune", "province", "address")
MAX_TEXT = 200  # a name or place longer than this is cut: it is shown, not trusted
STREAM_MAGIC = 0xC2  # a v2 compact payload; byte 1 < 2 is the stateful data stream
_FORMS = {b"{": "json", b"\xc1": "compact", b"\xc2": "compact"}
SHARED = {}  # one copy of each series definition, device name and template (shared_names)
SHARED_MAX = 200000  # a bound, should names come from a flood of garbage


class DecodeError(ValueError):
    """A payload that is not what the contract says for its topic."""


def split_topic(topic, prefixes):
    """`<prefix>/<site>/<kind>` -> (prefix, site, kind) for the first of `prefixes` (a string
    or a sequence) it is under, or None for a topic that is not ours."""
    if isinstance(prefixes, str):
        prefixes = (prefixes,)
    for prefix in prefixes:
        if topic.startswith(prefix) and topic[len(prefix) : len(prefix) + 1] == "/":
            parts = topic[len(prefix) + 1 :].split("/")
            if len(parts) != 2 or not parts[0] or not parts[1]:
                return None
            return prefix, parts[0], parts[1]
    return None


def partition_of(site, count):
    """The partition (0 to count - 1) whose instance reads the site's data (--partition):
    crc32 of the site id's UTF-8, modulo the count, so that any tool can tell."""
    return zlib.crc32(site.encode()) % count


def is_stream(payload):
    """Is this a v2 compact data stream message (stateful: it needs the site's context)?"""
    return len(payload) > 1 and payload[0] == STREAM_MAGIC and payload[1] < 2


def decode(kind, payload, ctx=None, site=None):
    """One message of topic kind `kind` from site `site` (the topic's) -> a dict as described
    above (DecodeError if bad). ctx: the site's decoding context (a dict; see above)."""
    payload = bytes(payload)
    if kind in BATCH_KINDS or kind == SERIES:
        if payload[:1] == b"":
            raise DecodeError("empty %s message" % kind)
        try:
            body = contract.decode(kind, payload, ctx, site)
        except ValueError as e:
            raise DecodeError(str(e)) from None
        if ctx is not None and (kind == SERIES or "m" in body):
            shared_names(ctx, force=kind == SERIES)
        if kind == SERIES:
            return _series(body)
        if body.get("kind") not in BATCH_KINDS:
            raise DecodeError("batch of unknown kind %r" % (body.get("kind"),))
        readings = body.get("readings")
        if not isinstance(readings, list):
            raise DecodeError("batch without a readings list")
        unresolved = body.get("unresolved") or ()
        return {"kind": body["kind"], "readings": [r for r in readings if isinstance(r, dict)],
                "v": body.get("v"), "form": "stream" if "m" in body else _FORMS.get(
                    payload[:1], "json"), "stream": body.get("stream"),
                "unresolved": [r for r in unresolved if isinstance(r, dict)],
                "duplicate": body.get("duplicate") is True}  # fmt: skip
    if kind not in ("status", "alarms"):
        raise DecodeError("no decoder for topic kind %r" % (kind,))
    if payload[:1] == b"":
        raise DecodeError("empty %s message" % kind)
    try:
        body = contract.decode(kind, payload, ctx, site)
    except ValueError as e:
        raise DecodeError(str(e)) from None
    if body.get("v") != contract.CONTRACT_VERSION:  # status and alarm sets say 1 in v2 too
        raise DecodeError("%s message of contract version %r, expected %d"
                          % (kind, body.get("v"), contract.CONTRACT_VERSION))  # fmt: skip
    if kind == "status":
        return _status(body)
    alarms = body.get("alarms")
    if not isinstance(alarms, list):
        raise DecodeError("alarms message without an alarms list")
    return {"time": _number(body.get("time")),
            "alarms": [a for a in alarms if isinstance(a, dict) and isinstance(
                a.get("alarm"), str)]}  # fmt: skip


def shared_names(ctx, force=False):
    """Swap the site's stream definitions for shared equal copies (see the module's doc):
    series definitions when their number changed since the last call (or `force`: a series
    table, which writes them all again), templates that are still the decoder's own lists."""
    if len(SHARED) > SHARED_MAX:
        SHARED.clear()
    done = ctx.setdefault("fleet_shared", {})
    for sid, st in ctx.get("streams", {}).items():
        series, templates = st.get("series"), st.get("templates")
        if not isinstance(series, dict) or not isinstance(templates, dict):
            return  # not the decoder state this was written for: leave it alone
        if force or done.get(sid) != len(series):
            for i, s in series.items():
                if type(s) is tuple:  # (device number, metric, unit, static)
                    s = tuple(SHARED.setdefault(x, x) if type(x) is str else x for x in s)
                    series[i] = SHARED.setdefault(s, s)
            for i, name in st.get("devices", {}).items():
                if type(name) is str:
                    st["devices"][i] = SHARED.setdefault(name, name)
            done[sid] = len(series)
        for d, t in templates.items():
            if type(t) is list:
                t = tuple(t)
                templates[d] = SHARED.setdefault(t, t)
    for sid in [s for s in done if s not in ctx.get("streams", {})]:
        del done[sid]


def _series(body):
    series = body.get("series")
    if not isinstance(series, list):
        raise DecodeError("series table without a series list")
    return {"kind": SERIES, "stream": _text(body.get("stream")),
            "integrity": _number(body.get("integrity")),
            "series": [s for s in series if isinstance(s, list) and len(s) >= 2]}  # fmt: skip


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
