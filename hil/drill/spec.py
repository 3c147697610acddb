"""Rig and scenario files (TOML) for the drill: loading, checking, durations (host only).

    rig = load_rig("hil/rigs/bts-emulated.toml")
    scn = load_scenario("hil/scenarios/typhoon-72h.toml", rig)
    scn.events    # [Event(t, do, args)] sorted by site time, each `for` unrolled into its undo

Every problem is a SpecError whose lines name the file, the key path and what was expected, as
the agent's own config errors do. The formats are documented in docs/drill.md.
"""

import tomllib

EMULATORS = ("eltek", "megatec", "router", "voltronic", "epever", "pylontech", "vedirect")
AGENT_KINDS = ("pi", "board")
DEFAULT_BOARD = "esp32-s3-devkitc-n8r8"  # the board table the board agent runs (firmware/boards)
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

# Scenario actions: name -> (required keys, optional keys, the undo action when `for` is given)
ACTIONS = {
    "mains_off": ((), ("device",), "mains_on"),
    "mains_on": ((), ("device",), None),
    "link_down": (("link",), (), "link_up"),
    "link_up": (("link",), (), None),
    "link_shape": (("link",), ("rate_kbit", "delay_ms", "loss_pct"), None),
    "broker_down": (("broker",), (), "broker_up"),
    "broker_up": (("broker",), (), None),
    "power_cut": ((), ("how",), "power_on"),
    "power_on": ((), (), None),
    "device_fault": (("device", "fault"), (), "device_ok"),
    "device_ok": (("device",), (), None),
    "disk_full": ((), (), "disk_ok"),
    "disk_ok": ((), (), None),
    "clock_jump": (("by",), (), "clock_back"),
    "clock_back": ((), (), None),
}
CUTS = ("kill", "flash")  # power_cut.how
LINK_KEYS = ("up", "rate_kbit", "delay_ms", "loss_pct", "budget_bytes", "budget_window")


class SpecError(ValueError):
    def __init__(self, lines):
        self.lines = list(lines)
        ValueError.__init__(self, "\n".join(self.lines))


def duration(text, where, errors, signed=False):
    """Seconds from 90, "45s", "30m", "1h30m", "1.5h", "3d" (and "+1h"/"-10m" when signed)."""
    if isinstance(text, bool):
        errors.append("%s: expected a duration such as \"30m\" or \"2h\", got %r" % (where, text))
        return 0.0
    if isinstance(text, (int, float)):
        return float(text)
    if not isinstance(text, str) or not text.strip():
        errors.append("%s: expected a duration such as \"30m\" or \"2h\", got %r" % (where, text))
        return 0.0
    s = text.strip().lower()
    sign = 1.0
    if s[0] in "+-":
        if not signed:
            errors.append("%s: a duration here has no sign, got %r" % (where, text))
            return 0.0
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    total, num = 0.0, ""
    for ch in s:
        if ch.isdigit() or ch == ".":
            num += ch
        elif ch in UNITS and num:
            try:
                total += float(num) * UNITS[ch]
            except ValueError:
                break
            num = ""
        else:
            errors.append("%s: cannot read duration %r (units s, m, h, d: \"1h30m\")"
                          % (where, text))  # fmt: skip
            return 0.0
    if num:
        errors.append("%s: duration %r has a number without a unit (s, m, h, d)" % (where, text))
        return 0.0
    return sign * total


def _read(path):
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise SpecError(["%s: cannot read: %s" % (path, e.strerror or e)]) from e
    except tomllib.TOMLDecodeError as e:
        raise SpecError(["%s: not valid TOML: %s" % (path, e)]) from e


def _unknown(d, known, where, errors):
    for k in d:
        if k not in known:
            errors.append("%s.%s: unknown key (known: %s)" % (where, k, ", ".join(known)))


class Rig:
    """What stands where: devices (emulated or real), links, brokers, and the agent."""

    def __init__(self, path, data):
        self.path = path
        self.name = data["rig"]["name"]
        self.site_id = data["rig"]["site_id"]
        self.site_kind = data["rig"].get("site_kind", "bts")
        self.description = data["rig"].get("description", "")
        self.agent = data.get("agent", {})
        self.devices = data.get("devices", [])
        self.links = [link["name"] for link in data.get("links", [])]
        self.brokers = data.get("brokers", [])

    @property
    def real_devices(self):
        return [d["id"] for d in self.devices if d.get("real")]

    def device(self, dev_id):
        for d in self.devices:
            if d["id"] == dev_id:
                return d
        return None


def load_rig(path):
    data = _read(path)
    errors = []
    _unknown(data, ("rig", "agent", "devices", "links", "brokers"), path, errors)
    rig = data.get("rig")
    if not isinstance(rig, dict):
        errors.append("%s: [rig]: missing (name, site_id)" % path)
    else:
        _unknown(rig, ("name", "site_id", "site_kind", "description"), path + ": rig", errors)
        for k in ("name", "site_id"):
            if not isinstance(rig.get(k), str) or not rig.get(k):
                errors.append("%s: rig.%s: expected a non-empty string" % (path, k))
        if rig.get("site_kind", "bts") not in ("bts", "wifi"):
            errors.append("%s: rig.site_kind: expected \"bts\" or \"wifi\"" % path)
    agent = data.get("agent", {})
    _unknown(agent, ("kind", "powered_by", "config", "board"), path + ": agent", errors)
    kinds = agent.get("kind", ["pi"])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if not isinstance(kinds, list) or not kinds or any(k not in AGENT_KINDS for k in kinds):
        names = " or ".join('"%s"' % k for k in AGENT_KINDS)
        errors.append("%s: agent.kind: expected %s (or a list of them), got %r"
                      % (path, names, agent.get("kind")))  # fmt: skip
    elif "board" in kinds:
        from firmware import board_table

        board = agent.get("board", DEFAULT_BOARD)
        if board not in board_table.names():
            errors.append("%s: agent.board: no board table %r (have: %s)"
                          % (path, board, ", ".join(board_table.names())))  # fmt: skip
    elif "board" in agent:
        errors.append("%s: agent.board: only for a rig whose agent.kind includes \"board\""
                      % path)  # fmt: skip
    ids = []
    for i, d in enumerate(data.get("devices", [])):
        where = "%s: devices[%d]" % (path, i)
        _unknown(d, ("id", "emulator", "real", "on_mains", "model", "links", "agent", "name"),
                 where, errors)  # fmt: skip
        if not isinstance(d.get("id"), str) or not d.get("id"):
            errors.append("%s.id: expected a non-empty string" % where)
        ids.append(d.get("id"))
        if bool(d.get("emulator")) == bool(d.get("real")):
            errors.append("%s: give exactly one of emulator = \"...\" (%s) or real = true"
                          % (where, ", ".join(EMULATORS)))  # fmt: skip
        elif d.get("emulator") and d["emulator"] not in EMULATORS:
            errors.append("%s.emulator: no emulator %r (have: %s)"
                          % (where, d["emulator"], ", ".join(EMULATORS)))  # fmt: skip
        ag = d.get("agent")
        if not isinstance(ag, dict) or not isinstance(ag.get("driver"), str):
            errors.append("%s.agent: expected a table: the agent's driver and settings" % where)
        if d.get("real") and isinstance(ag, dict) and ag.get("driver") == "megatec":
            if not (ag.get("serial") or {}).get("port"):
                errors.append("%s.agent.serial.port: a real serial device needs its port" % where)
    if agent.get("powered_by") is not None and agent.get("powered_by") not in ids:
        errors.append("%s: agent.powered_by: no device %r" % (path, agent.get("powered_by")))
    links = []
    for i, link in enumerate(data.get("links", [])):
        _unknown(link, ("name", "description"), "%s: links[%d]" % (path, i), errors)
        links.append(link.get("name"))
    if not links:
        errors.append("%s: [[links]]: a rig needs at least one link (the backhaul)" % path)
    names = []
    for i, b in enumerate(data.get("brokers", [])):
        where = "%s: brokers[%d]" % (path, i)
        _unknown(b, ("name", "link", "agent"), where, errors)
        names.append(b.get("name"))
        if b.get("link") not in links:
            errors.append("%s.link: no link %r (have: %s)" % (where, b.get("link"), ", ".join(
                str(x) for x in links)))  # fmt: skip
    if not names:
        errors.append("%s: [[brokers]]: a rig needs at least one broker" % path)
    for i, d in enumerate(data.get("devices", [])):
        for ifname, link in (d.get("links") or {}).items():
            if link not in links:
                errors.append("%s: devices[%d].links.%s: no link %r" % (path, i, ifname, link))
    if errors:
        raise SpecError(errors)
    r = Rig(path, data)
    r.agent = dict(agent, kind=kinds)
    if "board" in kinds:
        r.agent["board"] = agent.get("board", DEFAULT_BOARD)
    return r


class Event:
    __slots__ = ("t", "do", "args", "line")

    def __init__(self, t, do, args, line):
        self.t = t  # site seconds from the start
        self.do = do
        self.args = args
        self.line = line  # which [[events]] entry made it, for messages

    def __repr__(self):
        return "Event(%g, %r, %r)" % (self.t, self.do, self.args)

    def text(self):
        extra = " ".join("%s=%s" % (k, v) for k, v in sorted(self.args.items()))
        return ("%s %s" % (self.do, extra)).strip()


class Scenario:
    def __init__(self, path, meta, links, events):
        self.path = path
        self.name = meta["name"]
        self.description = meta.get("description", "")
        self.duration = meta["duration_s"]
        self.scale = float(meta.get("scale", 1))
        self.start = meta.get("start")
        self.sample = meta["sample_s"]
        self.drain = meta["drain_s"]
        self.links = links  # name -> initial {up, rate_kbit, delay_ms, loss_pct, budget...}
        self.events = events


def load_scenario(path, rig):
    data = _read(path)
    errors = []
    _unknown(data, ("scenario", "links", "events"), path, errors)
    meta = dict(data.get("scenario") or {})
    _unknown(meta, ("name", "description", "duration", "scale", "start", "sample", "drain"),
             path + ": scenario", errors)  # fmt: skip
    if not isinstance(meta.get("name"), str):
        errors.append("%s: scenario.name: expected a string" % path)
    meta["duration_s"] = duration(meta.get("duration"), path + ": scenario.duration", errors)
    meta["sample_s"] = duration(meta.get("sample", "10m"), path + ": scenario.sample", errors)
    meta["drain_s"] = duration(meta.get("drain", "2m"), path + ": scenario.drain", errors)
    scale = meta.get("scale", 1)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale < 1:
        errors.append("%s: scenario.scale: expected a number >= 1 (site seconds per real "
                      "second), got %r" % (path, scale))  # fmt: skip
    links = {}
    for name in rig.links:
        links[name] = {"up": True}
    for name, spec in (data.get("links") or {}).items():
        where = "%s: links.%s" % (path, name)
        if name not in rig.links:
            errors.append("%s: the rig %s has no link %r" % (where, rig.path, name))
            continue
        _unknown(spec, LINK_KEYS, where, errors)
        links[name].update(spec)
        if spec.get("budget_window", "day") not in ("hour", "day"):
            errors.append("%s.budget_window: expected \"hour\" or \"day\"" % where)
    events = []
    brokers = [b["name"] for b in rig.brokers]
    devices = [d["id"] for d in rig.devices]
    for i, ev in enumerate(data.get("events") or []):
        where = "%s: events[%d]" % (path, i)
        do = ev.get("do")
        if do not in ACTIONS:
            errors.append("%s.do: expected one of %s, got %r" % (where, ", ".join(ACTIONS), do))
            continue
        need, optional, undo = ACTIONS[do]
        known = ("at", "do", "for") + need + optional
        _unknown(ev, known, where, errors)
        for k in need:
            if k not in ev:
                errors.append("%s.%s: %s needs it" % (where, k, do))
        t = duration(ev.get("at"), where + ".at", errors)
        if ev.get("link") is not None and ev["link"] not in rig.links:
            errors.append("%s.link: the rig has no link %r" % (where, ev["link"]))
        if ev.get("broker") is not None and ev["broker"] not in brokers:
            errors.append("%s.broker: the rig has no broker %r" % (where, ev["broker"]))
        if ev.get("device") is not None and ev["device"] not in devices:
            errors.append("%s.device: the rig has no device %r" % (where, ev["device"]))
        if do == "power_cut" and ev.get("how", "kill") not in CUTS:
            errors.append("%s.how: expected %s (the board's cut at a flash write; the Pi's is "
                          "a kill), got %r" % (where, " or ".join('"%s"' % c for c in CUTS),
                                               ev.get("how")))  # fmt: skip
        args = {k: ev[k] for k in need + optional if k in ev}
        if do == "clock_jump":
            args["by_s"] = duration(ev.get("by"), where + ".by", errors, signed=True)
        events.append(Event(t, do, args, i))
        if "for" in ev:
            if undo is None:
                errors.append("%s.for: %s has no undo; give the opposite event" % (where, do))
                continue
            span = duration(ev["for"], where + ".for", errors)
            keep = {k: args[k] for k in ("link", "broker", "device") if k in args}
            events.append(Event(t + span, undo, keep, i))
    if meta.get("duration_s") and any(e.t > meta["duration_s"] for e in events):
        late = [e for e in events if e.t > meta["duration_s"]][0]
        errors.append("%s: events[%d]: at %gs, after the scenario's end (%gs)"
                      % (path, late.line, late.t, meta["duration_s"]))  # fmt: skip
    if errors:
        raise SpecError(errors)
    events.sort(key=lambda e: e.t)  # stable: same-time events keep the file's order
    return Scenario(path, meta, links, events)
