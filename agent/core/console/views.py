"""What the console's commands print (portable): facade data in, lines of at most 80 columns out.

Pure functions, no I/O, so each view is tested on its own with data shaped like the facade's.
"""

from agent.core.compat import monotonic
from agent.core.console import fmt

# Second line of defence behind cfg.redacted() (which hides every secret and every driver option
# not declared public): a key whose name suggests a secret is hidden whatever its value.
SECRET_HINTS = ("pass", "secret", "community", "key", "pin", "token", "auth", "cred", "priv")
NOT_SECRET = ("auth_protocol", "priv_protocol")  # names the schema knows are not secrets


def _mb(n):
    if n is None:
        return "-"
    if n < 10 * 1024:
        return "%d B" % n
    if n < 10 * 1024 * 1024:
        return "%d KB" % (n // 1024)
    return "%.1f MB" % (n / 1048576.0)


def _clock(c):
    if c is None:
        return "-"
    if isinstance(c, str):
        return c
    if c.get("trusted") is None:
        return c.get("source") or "system clock"
    if c.get("trusted"):
        return "trusted (%s)" % (c.get("source") or "?")
    return "NOT TRUSTED: readings carry estimated times"


def uplink_line(up):
    if up is None:
        return "none configured (readings are stored only)"
    if up.get("connected"):
        return "connected to %s" % up.get("broker")
    err = up.get("last_error") or "not connected yet"
    return "DOWN: %s" % err


def hours_minutes(seconds):
    """Time left as a person says it: "2 h 05 min", "45 min", "less than 1 min"."""
    s = int(seconds)
    if s < 60:
        return "less than 1 min"
    if s < 3600:
        return "%d min" % (s // 60)
    return "%d h %02d min" % (s // 3600, (s % 3600) // 60)


def site_lines(site, alarms):
    """The 2 a.m. answer, first in `status`: power source, runtime left, battery charge,
    backhaul, active alarms (by severity). None of it is known before the first poll cycle."""
    site = site or {}
    src = site.get("power_source")
    if src is None:
        power = "unknown (no poll yet)"
    elif src == "battery":
        power = "ON BATTERY for %s" % fmt.ago(site.get("on_battery_s") or 0)
    else:
        power = src if src != "unknown" else "unknown (no device reports it)"
    pairs = [("power", power)]
    rt = site.get("runtime_s")
    if rt is None:
        left = "unknown" if src == "battery" else "-"
    else:
        left = hours_minutes(rt) + (" (estimated)" if site.get("runtime_estimated") else "")
    pairs.append(("runtime left", left))
    charge = site.get("battery_charge")
    pairs.append(("battery", "-" if charge is None else "%s %%" % fmt.value(charge)))
    back = site.get("backhaul")
    pairs.append(("backhaul", "unknown" if back is None else str(back).upper()
                  if back in ("down", "degraded") else str(back)))  # fmt: skip
    if alarms:
        counts = {}
        for a in alarms:
            sev = a.get("severity", "?")
            counts[sev] = counts.get(sev, 0) + 1
        order = ("critical", "major", "minor", "warning")
        parts = ["%d %s" % (counts[k], k) for k in order if k in counts]
        parts += ["%d %s" % (counts[k], k) for k in sorted(counts) if k not in order]
        pairs.append(("alarms", "%d active: %s" % (len(alarms), ", ".join(parts))))
    else:
        pairs.append(("alarms", "none active"))
    return pairs


def status(facade, now_mono, logged_in, where):
    st = facade.status()
    alarms = st.get("active_alarms") or []
    pairs = site_lines(st.get("site_state"), alarms)
    pairs.append(("site", "%s (%s) %s" % (st["site"], st["kind"], st.get("name") or "")))
    pairs.append(("version", st.get("version")))
    pairs.append(("uptime", fmt.ago(st.get("uptime_s"))))
    pairs.append(("time", fmt.when(st.get("time"))))
    pairs.append(("clock", _clock(st.get("clock"))))
    stale = st.get("stale") or []
    last = st.get("last_poll")
    poll = "%d devices, %d stale%s, last poll %s ago" % (
        st.get("devices", 0),
        len(stale),
        (" (" + ", ".join(stale) + ")") if stale else "",
        fmt.ago(None if last is None else monotonic() - last),
    )
    pairs.append(("polling", poll))
    up = st.get("uplink")
    pairs.append(("uplink", uplink_line(up)))
    if up is not None:
        lp = up.get("last_publish")
        pairs.append(("last publish", "never" if lp is None else "%s (%s ago)" % (
            fmt.when(lp), fmt.ago(st.get("time", 0) - lp))))  # fmt: skip
    try:
        q = facade.queue_stats()
        depth = q.get("depth", {})
        qtext = "%d records (%s)" % (
            sum(depth.values()),
            ", ".join("%s %d" % (k, depth[k]) for k in sorted(depth)),
        )
        if q.get("bytes") is not None:
            qtext += ", " + _mb(q["bytes"])
    except Exception as e:
        qtext = "cannot read: %s" % e
    if st.get("store_error"):
        qtext += "; STORE FAILING: " + st["store_error"]
    pairs.append(("queue", qtext))
    for a in alarms[:8]:
        pairs.append(("alarm", "%s %s" % (a.get("severity", "?"), a.get("alarm", "?"))))
    if len(alarms) > 8:
        pairs.append(("", "... %d more: type alarms" % (len(alarms) - 8)))
    pairs.append(("console", "logged in (%s)" % where if logged_in else "not logged in"))
    return fmt.kv(pairs)


def devices(devs):
    if not devs:
        return ["no devices configured"]
    rows = []
    why = []
    for d in devs:
        state = "polling" if d.get("running") else ("STALE" if d.get("stale") else "ok")
        rows.append((
            d["id"], d.get("driver") or "?", "%gs" % d.get("interval", 0),
            fmt.ago(d.get("last_poll_ago")), fmt.ago(d.get("last_ok_ago")), state,
            "%d/%d" % (d.get("errors", 0), d.get("polls", 0)),
        ))  # fmt: skip
        if d.get("stale") and d.get("reason"):
            why.append("%s: %s" % (d["id"], d["reason"]))
    header = ("DEVICE", "DRIVER", "EVERY", "POLLED", "LAST OK", "STATE", "ERR/POLLS")
    out = fmt.table(header, rows, squeeze=0)
    if why:
        out.append("")
        out.append("why stale:")
        for w in why:
            out.extend(fmt.wrap("  " + w, fmt.WIDTH, "    "))
    return out


def readings(recs, now_wall):
    if not recs:
        return ["no readings yet"]
    rows = []
    for r in recs:
        t = r.get("time")
        rows.append((
            r.get("device"), r.get("metric"), fmt.value(r.get("value")), r.get("unit") or "",
            fmt.ago(None if t is None or now_wall is None else now_wall - t),
            r.get("quality") or "",
        ))  # fmt: skip
    return fmt.table(("DEVICE", "METRIC", "VALUE", "UNIT", "AGE", "QUALITY"), rows, squeeze=2)


def alarms(active, now_wall):
    if not active:
        return ["no active alarms"]
    rows = []
    for a in active:
        t = a.get("first_seen")
        rows.append((
            a.get("severity", "?"), a.get("rule", "?"), a.get("device", "?"),
            a.get("metric", "?"), fmt.value(a.get("value")),
            fmt.ago(None if t is None or now_wall is None else now_wall - t),
        ))  # fmt: skip
    return fmt.table(("SEVERITY", "ALARM", "DEVICE", "METRIC", "VALUE", "SINCE"), rows, squeeze=3)


def _rec(r):
    if not r:
        return "-"
    return "#%s %s" % (r.get("seq"), fmt.when(r.get("time")))


def queue(q):
    depth = q.get("depth", {})
    oldest = q.get("oldest") or {}
    newest = q.get("newest") or {}
    rows = []
    for lane in sorted(depth):
        rows.append((lane, str(depth[lane]), _rec(oldest.get(lane)), _rec(newest.get(lane))))
    out = fmt.table(("LANE", "RECORDS", "OLDEST", "NEWEST"), rows)
    out.append("")
    pairs = []
    if q.get("durable"):
        pairs.append(("stored", "%s of %s budget" % (_mb(q.get("bytes")), _mb(q.get("budget")))))
    else:
        pairs.append(("stored", "in memory only (lost on restart)"))
    pairs.append(("confirmed seq", str(q.get("confirmed_seq"))))
    pairs.append(("in flight", "%s batches" % q.get("inflight_batches", 0)))
    if "thinned" in q or "dropped" in q:
        pairs.append(("thinned/dropped", "%s / %s" % (q.get("thinned", 0), q.get("dropped", 0))))
    if q.get("fault"):
        pairs.append(("FAULT", q["fault"]))
    return out + fmt.kv(pairs)


def poll(dev, res):
    out = []
    if res["ok"]:
        out.append("%s: ok in %.2fs, %d readings" % (dev, res["duration"], len(res["samples"])))
    else:
        out.extend(fmt.wrap("%s: FAILED after %.2fs: %s" % (dev, res["duration"], res["error"]),
                            fmt.WIDTH, "    "))  # fmt: skip
    if res["samples"]:
        rows = [(m, fmt.value(v), u or "") for m, v, u in res["samples"]]
        out.extend(fmt.table(("METRIC", "VALUE", "UNIT"), rows))
    raw = res.get("raw") or {}
    if raw:
        out.append("")
        out.append("raw values from the device:" if dev != "site" else "the poll:")
        out.extend(fmt.kv([("  " + str(k), fmt.value(raw[k])) for k in sorted(raw)]))
    return out


def _flat(prefix, v, out):
    if isinstance(v, dict):
        for k in sorted(v):
            _flat(prefix + "." + k if prefix else k, v[k], out)
    elif isinstance(v, list) and v and isinstance(v[0], dict):
        for i, item in enumerate(v):
            _flat("%s[%d]" % (prefix, i), item, out)
    else:
        out.append((prefix, v))


def config(cfg):
    """The redacted config as "key.path = value" lines. Values are repr'd JSON-like."""
    import json

    flat = []
    _flat("", cfg, flat)
    out = []
    for k, v in flat:
        if v is None:
            continue
        last = k.split(".")[-1].lower()
        for hint in SECRET_HINTS:
            if hint in last and last not in NOT_SECRET:
                v = "<secret>"
        text = json.dumps(v) if not isinstance(v, str) else '"%s"' % v
        out.extend(fmt.wrap("%s = %s" % (k, text), fmt.WIDTH, "    "))
    return out


def checks(items):
    out = []
    for level, text in items:
        out.extend(fmt.wrap("%-7s %s" % (level.upper(), text), fmt.WIDTH, "        "))
    return out or ["no result"]
