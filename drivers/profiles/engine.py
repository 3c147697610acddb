"""Profile engine (portable): turns {oid: value} read from a device into samples, using the data
tables of drivers/profiles/*.py. No I/O: the SNMP drivers (pysnmp, and the portable client of
snmp-lite) fetch the OIDs that `plan()` asks for and hand the answers to `evaluate()`.

Value model (what a client must put in `values`): numeric OID strings without a leading dot ->
int (INTEGER, Counter32/64, Gauge, TimeTicks), str or bytes (OCTET STRING) or a dotted str (OID).
OIDs the device answered with noSuchObject, noSuchInstance or endOfMibView are simply absent.
`types` (optional) maps the same OIDs to their SNMP type as a BER tag (drivers/proto/ber.py); with
it a value whose type does not fit its row's conversion (TimeTicks where UPS-MIB defines INTEGER)
is left out and listed in state["wrong_type"] as (oid, metric, tag).

A profile is a dict:
    "name":   str
    "get":    ((oid, metric, conv, arg[, (lo, hi)]), ...)   scalars, fetched with GET; the
              optional (lo, hi) is the raw range the MIB allows: a value outside it is unknown
    "walk":   ((column, metric, conv, arg, reduce, limit_oid), ...)   table columns (GETBULK);
              metric None = fetched for a derive step only
    "derive": ((step_name, args), ...)               small computations named in derive.DERIVE
    "parts":  (profile, ...)                         a composite (router = system + if + hr)
    "quirks": ((match_oid, value_prefix, {metric: factor}), ...)   device-specific rescaling

Composites: parts are evaluated in order and a metric one part gave is not taken again from a
later part. A vendor view is a composite of the vendor's table and a standard one (huawei-ups =
the HUAWEI-UPS-MIB rows it reads better, then UPS-MIB): the order is the preference per metric.

conv: "int" / "num" (value * arg; -1 means unknown), "snum" (signed: -1 is a real value),
"ticks" (TimeTicks -> whole seconds), "enum" (arg maps int -> str), "str", "bool" (arg: the
values meaning True). A metric listed twice among "get" rows takes the first row the device
answers (so high-precision OIDs go first). reduce: "first" (lowest row), "max", "mean", "sum",
"each" (one sample per row, `<n>` in the metric replaced by the row number), "phases" (as "each",
only when there is more than one row).
limit_oid: a scalar holding the number of valid rows (upsInputNumLines); rows past it are junk
some devices fill with zeros.

Invariant: evaluate() never raises on device data; a value of the wrong type, out of its range or
out of a table is left out, as an unknown value is. It returns samples (metric, value, unit),
units from the registry.
"""

from agent.core import registry

UNKNOWN = -1  # what real devices answer for "I do not know" (UPS-MIB recordings do this a lot)

# The SNMP types (BER tags) each conversion accepts. INTEGER, Counter32, Gauge32 (= Unsigned32)
# and Counter64 are numbers; TimeTicks only where a row says "ticks".
_NUMBERS = (0x02, 0x41, 0x42, 0x46)
ACCEPTS = {
    "int": _NUMBERS,
    "num": _NUMBERS,
    "snum": _NUMBERS,
    "enum": _NUMBERS,
    "bool": _NUMBERS,
    "ticks": (0x43,),
    "str": (0x04,),
}
TYPE_NAMES = {
    0x02: "INTEGER",
    0x04: "OCTET STRING",
    0x05: "NULL",
    0x06: "OBJECT IDENTIFIER",
    0x40: "IpAddress",
    0x41: "Counter32",
    0x42: "Gauge32",
    0x43: "TimeTicks",
    0x44: "Opaque",
    0x46: "Counter64",
}


# --- helpers ---------------------------------------------------------------------------------
def flatten(profile):
    """A composite profile's parts in order, or (profile,)."""
    parts = profile.get("parts")
    if not parts:
        return (profile,)
    out = []
    for part in parts:
        out.extend(flatten(part))
    return tuple(out)


def plan(profile):
    """(gets, walks): the scalar OIDs to GET and the column prefixes to walk, without repeats."""
    gets = []
    walks = []
    for part in flatten(profile):
        for row in part.get("get", ()):
            _add(gets, row[0])
        for row in part.get("walk", ()):
            _add(walks, row[0])
            if row[5]:
                _add(gets, row[5])
        for row in part.get("quirks", ()):
            _add(gets, row[0])
        for _step, args in part.get("derive", ()):
            for oid in args.get("get", ()):
                _add(gets, oid)
            for oid in args.get("walk", ()):
                _add(walks, oid)
    return gets, walks


def _add(seq, item):
    if item not in seq:
        seq.append(item)


def row_key(oid, prefix):
    """Row number of `oid` in the column `prefix`, or None. Some devices put an extra `.0`
    after the index (1.3.6.1.2.1.33.1.3.3.1.3.1.0): the first index component is the row."""
    n = len(prefix)
    if len(oid) <= n + 1 or not oid.startswith(prefix) or oid[n] != ".":
        return None
    first = oid[n + 1 :].split(".", 1)[0]
    try:
        return int(first)
    except ValueError:
        return None


def cells(values, prefix):
    """[(row, oid, value), ...] of the column `prefix`, ordered by row; first answer wins per
    row."""
    rows = {}
    dotted = prefix + "."
    n = len(dotted)
    # row_key() inlined: this runs for every value and every column a profile reads
    for oid, value in values.items():
        if len(oid) <= n or not oid.startswith(dotted):
            continue
        try:
            key = int(oid[n:].split(".", 1)[0])
        except ValueError:
            continue
        if key not in rows:
            rows[key] = (oid, value)
    return [(k, rows[k][0], rows[k][1]) for k in sorted(rows)]


def column(values, prefix):
    """[(row, value), ...] of the column `prefix`, ordered by row; first answer wins per row."""
    return [(k, v) for k, _oid, v in cells(values, prefix)]


def type_name(tag):
    return TYPE_NAMES.get(tag, "tag 0x%02x" % tag) if isinstance(tag, int) else str(tag)


def text(value):
    """An OCTET STRING as clean text ('' when it holds nothing printable)."""
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except Exception:
            value = "".join(chr(b) for b in value)
    if not isinstance(value, str):
        return ""
    return "".join(c for c in value if c >= " " and c != "\x7f").strip()


def sanitize(name):
    """A device-given name as one metric component: [A-Za-z0-9_-], '' when nothing is left."""
    out = []
    for c in name:
        if ("a" <= c <= "z") or ("A" <= c <= "Z") or ("0" <= c <= "9") or c in "_-":
            out.append(c)
        else:
            out.append("_")
    return "".join(out).strip("_")


def convert(value, conv, arg):
    """One raw value -> the metric's value, or None for unknown / unusable."""
    if conv == "str":
        s = text(value)
        return s if s else None
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    if conv == "enum":
        return arg.get(value)
    if conv == "bool":
        return value in arg
    if conv == "ticks":
        return value // 100 if value >= 0 else None
    if conv == "snum":
        return _scaled(value, arg)
    if value == UNKNOWN:
        return None
    if conv == "int":
        return int(value * (arg or 1))
    if conv == "num":
        return _scaled(value, arg)
    return None


def _scaled(value, scale):
    if scale is None or scale == 1:
        return float(value)
    # round() keeps 5210 * 0.1 at 521.0 instead of 521.0000000000001
    return round(value * scale, 6)


def sample_of(metric, value):
    """(metric, value, unit), the unit from the registry."""
    return (metric, value, registry.unit_of(metric))


def _reduce(rows, reduce, metric):
    if not rows:
        return []
    vals = [v for _r, v in rows]
    if reduce == "first":
        return [sample_of(metric, vals[0])]
    if reduce == "max":
        return [sample_of(metric, max(vals))]
    if reduce == "sum":
        return [sample_of(metric, sum(vals))]
    if reduce == "mean":
        return [sample_of(metric, round(sum(vals) / len(vals), 3))]
    if reduce == "phases" and len(rows) < 2:
        return []
    if reduce in ("phases", "each"):
        return [sample_of(metric.replace("<n>", str(r)), v) for r, v in rows]
    return []


# --- evaluation ------------------------------------------------------------------------------
def evaluate(profile, values, state, now, types=None):
    """Samples for one poll. `state` is a dict the caller keeps between polls of one device
    (counters, last uptime); `now` is monotonic seconds; `types` as in the module docstring.
    Sets state["wrong_type"] to the values left out for their type in this poll."""
    samples = []
    taken = {}  # metric -> True: the first part that gives a metric wins (composites)
    wrong = []
    for part in flatten(profile):
        own = []
        scale = _quirk_scales(part, values)
        done = {}
        for row in part.get("get", ()):
            oid, metric, conv, arg = row[0], row[1], row[2], row[3]
            if oid not in values or metric in done:
                continue
            raw = values[oid]
            if not _typed(types, oid, conv, metric, wrong) or not _in_range(raw, row):
                continue
            v = convert(raw, conv, arg)
            if v is not None:
                done[metric] = True
                own.append(sample_of(metric, _rescale(v, scale.get(metric))))
        for prefix, metric, conv, arg, reduce, limit_oid in part.get("walk", ()):
            if metric is None:
                continue
            limit = values.get(limit_oid) if limit_oid else None
            rows = []
            for r, oid, raw in cells(values, prefix):
                if isinstance(limit, int) and limit >= 0 and r > limit:
                    continue
                if not _typed(types, oid, conv, metric, wrong):
                    continue
                v = convert(raw, conv, arg)
                if v is not None:
                    rows.append((r, _rescale(v, scale.get(metric))))
            own.extend(_reduce(rows, reduce, metric))
        for step, args in part.get("derive", ()):
            from drivers.profiles.derive import DERIVE  # once loaded, a sys.modules look-up

            own.extend(DERIVE[step](args, values, state, now, samples + own))
        for sample in own:
            if sample[0] not in taken:
                taken[sample[0]] = True
                samples.append(sample)
    state["wrong_type"] = wrong
    return samples


def _typed(types, oid, conv, metric, wrong):
    """True when the value's SNMP type fits `conv` (or the type is not known)."""
    if types is None:
        return True
    tag = types.get(oid)
    if tag is None or tag in ACCEPTS.get(conv, (tag,)):
        return True
    wrong.append((oid, metric, tag))
    return False


def _in_range(raw, row):
    if len(row) < 5 or not isinstance(raw, int):
        return True
    return row[4][0] <= raw <= row[4][1]


def _quirk_scales(part, values):
    scale = {}
    for oid, prefix, factors in part.get("quirks", ()):
        if text(values.get(oid, "")).upper().startswith(prefix):
            scale.update(factors)
    return scale


def _rescale(value, factor):
    if factor is None or isinstance(value, (str, bool)):
        return value
    return round(value * factor, 6)
