"""Profile derive steps (portable): the small computations a profile names in its "derive" rows
(drivers/profiles/engine.py says the profile shape). Each step is
    step(args, values, state, now, samples so far) -> [samples]
with `values` and `state` as engine.evaluate() has them; like evaluate(), a step never raises on
device data (a value of the wrong type or missing is left out). engine.evaluate() imports this
module at the first derive row it meets: a profile without one does not load it.
"""

from drivers.profiles.engine import column, convert, row_key, sample_of, sanitize, text

IF_OPER = {
    1: "up",
    2: "down",
    3: "testing",
    4: "unknown",
    5: "dormant",
    6: "notPresent",
    7: "lowerLayerDown",
}


def _alarm_table(args, values, state, now, samples):
    """ups.alarm: names of the rows of an alarm table whose values are well-known alarm OIDs."""
    names = []
    base = args["base"]
    for _row, value in column(values, args["column"]):
        oid = text(value) if not isinstance(value, str) else value
        key = row_key(oid, base)
        if key is None:
            names.append("vendor")  # an enterprise alarm OID: present, meaning unknown
        else:
            names.append(args["names"].get(key, "alarm%d" % key))
    count = values.get(args.get("count_oid"))
    if not names and not (isinstance(count, int) and count == 0):
        return []  # neither rows nor a zero count: the device does not expose its alarms
    state["alarms"] = names
    return [sample_of("ups.alarm", " ".join(names))]


def _nut_status(args, values, state, now, samples):
    """ups.status as NUT tokens from output source, battery status and active alarms."""
    tokens = []
    known = False
    for oid_key, map_key in (("source_oid", "source_tokens"), ("battery_oid", "battery_tokens")):
        v = values.get(args.get(oid_key))
        if isinstance(v, int) and v in args[map_key]:  # a value outside the map is unknown
            known = True
            for t in args[map_key][v].split():
                if t not in tokens:
                    tokens.append(t)
    replace = values.get(args.get("replace_oid"))
    if isinstance(replace, int) and replace in args.get("replace_values", ()):
        tokens.append("RB")
    for name in state.get("alarms", ()) if args.get("alarms") else ():
        for t in args["alarm_tokens"].get(name, "ALARM").split():
            if t not in tokens:
                tokens.append(t)
    state["alarms"] = ()
    if not known:
        return []
    if "OB" in tokens and "OL" in tokens:
        tokens.remove("OL")  # an OnBattery alarm outranks a stale output source
    if "OB" in tokens and "DISCHRG" not in tokens:
        tokens.append("DISCHRG")
    return [sample_of("ups.status", " ".join(tokens))]


def _uptime(args, values, state, now, samples):
    """device.uptime and device.rebooted (uptime went backwards since the previous poll)."""
    ticks = values.get(args["oid"])
    if not isinstance(ticks, int) or ticks < 0:
        return []
    prev = state.get("uptime_ticks")
    state["uptime_ticks"] = ticks
    rebooted = prev is not None and ticks < prev
    state["rebooted"] = rebooted
    return [sample_of("device.uptime", ticks // 100), sample_of("device.rebooted", rebooted)]


def _if_table(args, values, state, now, samples):
    """if.<name>.oper and, from the second poll on, if.<name>.in_bps / out_bps.

    Counters: the 64-bit ifHC* columns when the row has them, else the 32-bit ifIn/OutOctets.
    A 32-bit counter that went down wrapped once (2**32 added). A 64-bit counter that went down
    was reset (a wrap takes decades at 100 Gbit/s): no rate this poll. After a reboot (the
    uptime step saw sysUpTime go back) every counter restarts: no rate this poll either."""
    names = {}
    for r, v in column(values, args["descr"]):
        names[r] = sanitize(text(v))
    for r, v in column(values, args["name"]):
        s = sanitize(text(v))
        if s:
            names[r] = s
    hc_in = dict(column(values, args["hc_in"]))
    hc_out = dict(column(values, args["hc_out"]))
    in32 = dict(column(values, args["in"]))
    out32 = dict(column(values, args["out"]))
    counters = state.setdefault("if", {})
    rebooted = state.get("rebooted", False)
    used = {}
    out = []
    for r, oper in column(values, args["oper"]):
        name = names.get(r) or ("if%d" % r)
        if name in used:
            name = "%s_%d" % (name, r)
        used[name] = True
        status = IF_OPER.get(oper) if isinstance(oper, int) else None
        if status:
            out.append(sample_of("if.%s.oper" % name, status))
        if isinstance(hc_in.get(r), int) and isinstance(hc_out.get(r), int):
            cur = (now, hc_in[r], hc_out[r], 64)
        elif isinstance(in32.get(r), int) and isinstance(out32.get(r), int):
            cur = (now, in32[r], out32[r], 32)
        else:
            continue
        prev = counters.get(r)
        counters[r] = cur
        if prev is None or prev[3] != cur[3] or rebooted:
            continue
        dt = cur[0] - prev[0]
        if dt <= 0:
            continue
        d_in = _delta(prev[1], cur[1], cur[3])
        d_out = _delta(prev[2], cur[2], cur[3])
        if d_in is not None:
            out.append(sample_of("if.%s.in_bps" % name, round(d_in * 8 / dt, 3)))
        if d_out is not None:
            out.append(sample_of("if.%s.out_bps" % name, round(d_out * 8 / dt, 3)))
    return out


def _delta(old, new, bits):
    if new >= old:
        return new - old
    if bits == 32:
        return new + (1 << 32) - old
    return None


def _hr_memory(args, values, state, now, samples):
    """router.memory: % of hrStorageRam in use. net-snmp on Linux counts buffers and page cache
    as used RAM and lists them as rows of their own ("Memory buffers", "Cached memory"); those
    are subtracted, as `free` does, or every Linux router would read 90 %+."""
    types = dict(column(values, args["type"]))
    descr = dict(column(values, args["descr"]))
    units = dict(column(values, args["units"]))
    size = dict(column(values, args["size"]))
    used = dict(column(values, args["used"]))
    total = 0
    in_use = 0
    reclaim = 0
    for r, t in types.items():
        if not all(isinstance(x.get(r), int) for x in (units, size, used)):
            continue
        if t == args["ram_type"]:
            total += units[r] * size[r]
            in_use += units[r] * used[r]
        elif text(descr.get(r, "")) in args["reclaimable"]:
            reclaim += units[r] * used[r]
    if total <= 0:
        return []
    if 0 < reclaim < in_use:
        in_use -= reclaim
    return [sample_of("router.memory", round(100.0 * in_use / total, 2))]


def _rows_by_key(args, values, state, now, samples):
    """One sample per row of `value` whose `filter` column equals `filter_value`, named by the
    row's `key` column: APC rPDU load rows are per phase (bank 0) or per bank."""
    keys = dict(column(values, args["key"]))
    filt = dict(column(values, args["filter"])) if args.get("filter") else None
    out = []
    for r, raw in column(values, args["value"]):
        if filt is not None and filt.get(r) != args["filter_value"]:
            continue
        key = keys.get(r)
        v = convert(raw, args["conv"], args["arg"])
        if isinstance(key, int) and key > 0 and v is not None:
            out.append(sample_of(args["metric"].replace("<n>", str(key)), v))
    return out


def _max_of(args, values, state, now, samples):
    """`metric` = the largest of the samples `of` given so far (ups.load of a three-phase unit
    whose vendor MIB reports the phases only: the most loaded phase is the one that trips)."""
    got = [v for m, v, _u in samples if m in args["of"] and not isinstance(v, (bool, str))]
    return [sample_of(args["metric"], max(got))] if got else []


DERIVE = {
    "max_of": _max_of,
    "rows_by_key": _rows_by_key,
    "alarm_table": _alarm_table,
    "nut_status": _nut_status,
    "uptime": _uptime,
    "if_table": _if_table,
    "hr_memory": _hr_memory,
}
