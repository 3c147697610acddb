"""The rig's devices and the agent's site config, built from a rig file (host only).

    site = RigSite(rig, lab, clock=site_time.mono).start()   # emulators up, in the site namespace
    site.set_mains(False)            # every emulator with on_mains = true (or one device)
    site.set_link("fibre", False)    # router interfaces that follow that link
    site.power_state("plant")        # the model's truth (hil/emulators/power.py)
    toml_text = site_config(rig, site, brokers, links, data_dir)

Emulators run on the site clock (model time = site time, so they follow the drill's scale); SNMP
emulators bind the site namespace's loopback (hil/netns.call_in), pty emulators need no network.
A real device has no emulator: its agent section already says where it is (a serial port), and
the scenario's events on it become prompts for the operator, logged in the report.
"""

from hil import netns
from hil.emulators.eltek import EltekPlant
from hil.emulators.megatec import MegatecEmulator
from hil.emulators.modbus_epever import EpeverEmulator
from hil.emulators.pylontech import PylontechEmulator
from hil.emulators.router import Router
from hil.emulators.vedirect import VeDirectEmulator
from hil.emulators.voltronic import VoltronicEmulator

SNMP_KINDS = ("eltek", "router")


def _make(kind, model, clock, dev):
    m = dict(model or {})
    if kind == "eltek":
        return EltekPlant(clock=clock, **m)
    if kind == "megatec":
        return MegatecEmulator(clock=clock, **m)
    if kind == "router":
        names = sorted((dev.get("links") or {}).keys()) or ["wan0"]
        return Router([(i + 1, n) for i, n in enumerate(names)], **m)
    if kind == "voltronic":
        return VoltronicEmulator(clock=clock, **m)
    if kind == "epever":
        return EpeverEmulator(clock=clock, **m)
    if kind == "pylontech":
        return PylontechEmulator(clock=clock, **m)
    if kind == "vedirect":
        return VeDirectEmulator(clock=clock, **m)
    raise ValueError("no emulator %r" % kind)


class RigSite:
    def __init__(self, rig, lab, clock):
        self.rig = rig
        self.lab = lab
        self.clock = clock
        self.emulators = {}  # device id -> emulator
        self.where = {}  # device id -> what the agent's device section gets (port, host...)

    def start(self):
        try:
            for dev in self.rig.devices:
                if dev.get("real"):
                    continue
                kind = dev["emulator"]
                emu = _make(kind, dev.get("model"), self.clock, dev)
                if kind in SNMP_KINDS:
                    netns.call_in(self.lab.place("site"), emu.start)
                    self.where[dev["id"]] = {"snmp": {"host": "127.0.0.1", "port": emu.port}}
                else:
                    self.where[dev["id"]] = {"serial": {"port": emu.start()}}
                self.emulators[dev["id"]] = emu
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        for emu in self.emulators.values():
            try:
                emu.stop()
            except Exception:
                pass
        self.emulators = {}

    # --- what the scenario does to the devices ------------------------------------------------
    def mains_devices(self, device=None):
        return [d["id"] for d in self.rig.devices
                if d.get("on_mains") and (device is None or d["id"] == device)]  # fmt: skip

    def set_mains(self, on, device=None):
        """Returns the real devices the operator has to switch by hand."""
        manual = []
        for dev_id in self.mains_devices(device):
            emu = self.emulators.get(dev_id)
            if emu is None:
                manual.append(dev_id)
            else:
                emu.set_mains(on)
        return manual

    def set_link(self, link, up):
        for dev in self.rig.devices:
            emu = self.emulators.get(dev["id"])
            for ifname, name in (dev.get("links") or {}).items():
                if name == link and isinstance(emu, Router):
                    emu.set_oper(ifname, up)

    def set_fault(self, dev_id, fault):
        emu = self.emulators.get(dev_id)
        if emu is None:
            return False
        emu.set_fault(fault)
        return True

    def power_state(self, dev_id):
        emu = self.emulators.get(dev_id)
        fn = getattr(emu, "power_state", None)
        return fn() if fn is not None else None

    def truth(self):
        """{device: power_state} for every emulator with a power model."""
        out = {}
        for dev_id, emu in self.emulators.items():
            fn = getattr(emu, "power_state", None)
            if fn is not None:
                out[dev_id] = fn()
        return out


# --- the agent's site config ------------------------------------------------------------------


def merge(base, extra):
    """base updated with extra, tables merged key by key (extra wins)."""
    out = dict(base)
    for k, v in (extra or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def site_config(rig, site, brokers, links, data_dir):
    """The agent's config as a dict: the rig's devices where the rig put them, its brokers in
    order (each with its link's budget from the scenario), storage in data_dir, and whatever the
    rig's [agent.config] adds or overrides."""
    devices = []
    for dev in rig.devices:
        d = merge({"id": dev["id"]}, dev.get("agent"))
        if dev.get("name"):
            d["name"] = dev["name"]
        d = merge(d, site.where.get(dev["id"]))
        devices.append(d)
    out_brokers = []
    for b in rig.brokers:
        host, port = brokers[b["name"]]
        entry = {"name": b["name"], "host": host, "port": port, "insecure": True}
        link = links.get(b["link"], {})
        for key in ("budget_bytes", "budget_window"):
            if key in link:
                entry[key] = link[key]
        out_brokers.append(merge(entry, b.get("agent")))
    cfg = {
        "site": {"id": rig.site_id, "kind": rig.site_kind, "name": "%s (drill)" % rig.name,
                 "clock": "system"},  # fmt: skip
        "devices": devices,
        "uplink": {"brokers": out_brokers},
        "storage": {"dir": data_dir},
    }
    return merge(cfg, rig.agent.get("config"))


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"%s"' % v.replace("\\", "\\\\").replace('"', '\\"')
    if isinstance(v, (list, tuple)):
        return "[%s]" % ", ".join(_toml_value(x) for x in v)
    raise TypeError("cannot write %r as TOML" % (v,))


def to_toml(d, prefix=""):
    """A small TOML writer for config dicts: scalars, lists, tables, arrays of tables."""
    lines, tables, arrays = [], [], []
    for k, v in d.items():
        if isinstance(v, dict):
            tables.append((k, v))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            arrays.append((k, v))
        else:
            lines.append("%s = %s" % (k, _toml_value(v)))
    out = "\n".join(lines) + ("\n" if lines else "")
    for k, v in tables:
        name = prefix + k
        out += "\n[%s]\n" % name + to_toml(v, name + ".")
    for k, items in arrays:
        name = prefix + k
        for item in items:
            out += "\n[[%s]]\n" % name + to_toml(item, name + ".")
    return out
