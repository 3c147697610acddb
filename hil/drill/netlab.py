"""The rig's network: its own namespaces, veth links, and the kernel's shaping (host only).

    lab = NetLab(["fibre", "satellite"]).start()   # or LoopbackLab when not privileged
    lab.broker_host("satellite")    # the address a broker behind that link listens on (noc ns)
    lab.set_link("satellite", up=True, rate_kbit=64, delay_ms=600, loss_pct=2)
    lab.set_link("fibre", up=False) # a silent cut: packets vanish, nothing answers
    lab.stop()                      # namespaces, links and helper processes gone
    brokers = Brokers(lab, rig.brokers).start()   # one mosquitto per broker, behind its link

Topology (one namespace per box, addresses private to these namespaces):

    site ns  agent, device emulators (on its loopback)   10.77.0.2 --+
    rtr ns   the site router                             10.77.0.1 --+
             link k: 10.77.2k.1 --- 10.77.2k.2  lnk<k> ns 10.77.2k+1.1 --- 10.77.2k+1.2  noc ns
    noc ns   brokers (one per link, on 10.77.2k+1.2), the operations centre's subscriber

A cut sets the noc end of link k down: the link ns keeps its route (the carrier is gone, the
route stays) and drops what it forwards, so the agent sees silence, as behind a real router
whose fibre was cut somewhere in the carrier's network; no ICMP, no reset. Shaping is applied in
the link's own namespace on both of its interfaces (both directions): `tc netem` with delay,
loss and rate when the kernel has sch_netem; otherwise `tc tbf` for the rate and a userspace
delay line on a TUN device (hil/drill/delayline.py) for delay and loss, and `shaping` says so.
The replies of each broker go back over the link they came in on (source routing in noc ns).
"""

import os
import subprocess
import sys

from hil import netns as ns
from hil.broker import Broker
from hil.proc import stop

SITE_ADDR = "10.77.0.2"
RTR_ADDR = "10.77.0.1"


class NetError(RuntimeError):
    pass


def _ip(*args, check=True):
    r = subprocess.run([ns.ip_path()] + [str(a) for a in args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise NetError("ip %s: %s" % (" ".join(str(a) for a in args), r.stderr.strip()))
    return r


def _in(name, *argv, check=True):
    r = subprocess.run(ns.exec_argv(name, [str(a) for a in argv]), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise NetError("in %s: %s: %s" % (name, " ".join(str(a) for a in argv), r.stderr.strip()))
    return r


def netem_available(probe_ns):
    """Whether the kernel has sch_netem: try one on a veth in probe_ns."""
    _ip("-n", probe_ns, "link", "add", "nmp0", "type", "veth", "peer", "name", "nmp1")
    try:
        r = _in(probe_ns, "tc", "qdisc", "add", "dev", "nmp0", "root", "netem", "delay", "1ms",
                check=False)  # fmt: skip
        return r.returncode == 0
    finally:
        _ip("-n", probe_ns, "link", "del", "nmp0", check=False)


class NetLab:
    kind = "netns"

    def __init__(self, links, tag=None):
        self.links = list(links)
        tag = tag or "hil%d" % os.getpid()
        self.ns = {"site": tag + "s", "rtr": tag + "r", "noc": tag + "n"}
        for k, name in enumerate(self.links, 1):
            self.ns["lnk:" + name] = "%sl%d" % (tag, k)
        self.made = []
        self.state = {name: {"up": True} for name in self.links}
        self.delaylines = {}  # link -> Popen
        self.netem = None
        self.shaping = None
        self.mode = None

    # --- addresses ------------------------------------------------------------------------
    def _k(self, link):
        return self.links.index(link) + 1

    def broker_host(self, link):
        return "10.77.%d.2" % (2 * self._k(link) + 1)

    def place(self, where):
        """The namespace name of 'site', 'noc', 'rtr' (None: the caller's own)."""
        return self.ns.get(where)

    # --- building -------------------------------------------------------------------------
    def start(self):
        try:
            self._build()
        except BaseException:
            self.stop()
            raise
        return self

    def _build(self):
        remove_stale()
        for name in self.ns.values():
            _ip("netns", "add", name)
            self.made.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
        site, rtr, noc = self.ns["site"], self.ns["rtr"], self.ns["noc"]
        self._veth(site, "lan0", SITE_ADDR, rtr, "lan0", RTR_ADDR, 24)
        _ip("-n", site, "route", "add", "default", "via", RTR_ADDR)
        self._forward(rtr)
        self.netem = netem_available(rtr)
        for name in self.links:
            k = self._k(name)
            lnk = self.ns["lnk:" + name]
            a_rtr, a_lnk = "10.77.%d.1" % (2 * k), "10.77.%d.2" % (2 * k)
            b_lnk, b_noc = "10.77.%d.1" % (2 * k + 1), "10.77.%d.2" % (2 * k + 1)
            self._veth(rtr, "wan%d" % k, a_rtr, lnk, "up0", a_lnk, 24)
            self._veth(lnk, "dn0", b_lnk, noc, "lnk%d" % k, b_noc, 24)
            self._forward(lnk)
            _ip("-n", rtr, "route", "add", "10.77.%d.0/24" % (2 * k + 1), "via", a_lnk)
            _ip("-n", lnk, "route", "add", "10.77.0.0/24", "via", a_rtr)
            # Replies from the broker behind link k go back over link k.
            _ip("-n", noc, "rule", "add", "from", b_noc, "lookup", 100 + k)
            _ip("-n", noc, "route", "add", "10.77.0.0/24", "via", b_lnk, "table", 100 + k)
            # Neighbours are fixed, so a cut link is silent (no ARP failure, no ICMP).
            self._pin_neighbours(lnk, "dn0", noc, "lnk%d" % k, b_lnk, b_noc)
        self.shaping = "tc netem" if self.netem else "tc tbf + userspace delay line (no sch_netem)"
        self.mode = "network namespaces, veth links, %s" % self.shaping

    def _veth(self, ns_a, if_a, addr_a, ns_b, if_b, addr_b, plen):
        # Made inside the two namespaces: no interface ever appears in the caller's namespace.
        _ip("-n", ns_a, "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", ns_b)
        _ip("-n", ns_a, "addr", "add", "%s/%d" % (addr_a, plen), "dev", if_a)
        _ip("-n", ns_b, "addr", "add", "%s/%d" % (addr_b, plen), "dev", if_b)
        _ip("-n", ns_a, "link", "set", if_a, "up")
        _ip("-n", ns_b, "link", "set", if_b, "up")

    def _forward(self, name):
        _in(name, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        _in(name, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")
        _in(name, "sysctl", "-qw", "net.ipv4.conf.default.rp_filter=0")

    def _pin_neighbours(self, ns_a, if_a, ns_b, if_b, addr_a, addr_b):
        mac_a = self._mac(ns_a, if_a)
        mac_b = self._mac(ns_b, if_b)
        for name, addr, mac, dev in ((ns_a, addr_b, mac_b, if_a), (ns_b, addr_a, mac_a, if_b)):
            _ip("-n", name, "neigh", "replace", addr, "lladdr", mac, "dev", dev,
                "nud", "permanent")

    def _mac(self, name, ifname):
        with_ = _ip("-n", name, "-o", "link", "show", ifname).stdout
        return with_.split("link/ether", 1)[1].split()[0]

    # --- link control -----------------------------------------------------------------------
    def set_link(self, link, up=None, rate_kbit=None, delay_ms=None, loss_pct=None):
        """Cut or restore a link and (re)shape it; a value left None keeps the last one."""
        st = self.state[link]
        k = self._k(link)
        if up is not None and up != st["up"]:
            _ip("-n", self.ns["noc"], "link", "set", "lnk%d" % k, "up" if up else "down")
            if up:  # the table-100+k route went with the carrier: put it back
                _ip("-n", self.ns["noc"], "route", "replace", "10.77.0.0/24",
                    "via", "10.77.%d.1" % (2 * k + 1), "table", 100 + k)  # fmt: skip
            st["up"] = up
        shape = {"rate_kbit": rate_kbit, "delay_ms": delay_ms, "loss_pct": loss_pct}
        changed = False
        for key, v in shape.items():
            if v is not None and st.get(key) != v:
                st[key] = v
                changed = True
        if changed:
            self._shape(link)

    def _shape(self, link):
        st = self.state[link]
        lnk = self.ns["lnk:" + link]
        rate = st.get("rate_kbit") or 0
        delay = st.get("delay_ms") or 0
        loss = st.get("loss_pct") or 0
        for dev in ("up0", "dn0"):
            _in(lnk, "tc", "qdisc", "del", "dev", dev, "root", check=False)
        self._stop_delayline(link)
        if self.netem:
            if rate or delay or loss:
                args = ["delay", "%dms" % delay, "loss", "%g%%" % loss]
                if rate:
                    args += ["rate", "%dkbit" % rate]
                for dev in ("up0", "dn0"):
                    _in(lnk, "tc", "qdisc", "add", "dev", dev, "root", "netem", "limit", "10000",
                        *args)  # fmt: skip
            return
        if rate:
            # 2 KB of burst (above one MTU) and up to 4 s queued: a modem's buffer, not a line's.
            for dev in ("up0", "dn0"):
                _in(lnk, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", "%dkbit" % rate,
                    "burst", "2kb", "latency", "4s")  # fmt: skip
        if delay or loss:
            self._start_delayline(link, delay, loss)

    def _start_delayline(self, link, delay_ms, loss_pct):
        lnk = self.ns["lnk:" + link]
        _ip("-n", lnk, "tuntap", "add", "dev", "dl0", "mode", "tun", check=False)
        _ip("-n", lnk, "link", "set", "dl0", "up")
        _in(lnk, "sysctl", "-qw", "net.ipv4.conf.dl0.rp_filter=0")
        # Whatever arrives on either side goes into the delay line first; what it writes back
        # arrives "from dl0" and takes the main table to the other side.
        for dev in ("up0", "dn0"):
            _ip("-n", lnk, "rule", "add", "iif", dev, "lookup", 200, check=False)
        _ip("-n", lnk, "route", "replace", "default", "dev", "dl0", "table", 200)
        argv = [sys.executable, "-m", "hil.drill.delayline", "--dev", "dl0",
                "--delay-ms", str(delay_ms), "--loss-pct", str(loss_pct),
                "--seed", str(self._k(link))]  # fmt: skip
        from hil.proc import die_with_parent

        env = dict(os.environ, PYTHONPATH=_repo_root())
        self.delaylines[link] = subprocess.Popen(
            ns.exec_argv(lnk, argv), env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, preexec_fn=die_with_parent,
        )  # fmt: skip
        line = self.delaylines[link].stderr.readline()  # "ready" once attached to the device
        if b"ready" not in line:
            why = line.decode(errors="replace")
            raise NetError("delay line on %s did not start: %s" % (link, why))

    def _stop_delayline(self, link):
        p = self.delaylines.pop(link, None)
        if p is not None:
            stop(p, 5)
            lnk = self.ns["lnk:" + link]
            for dev in ("up0", "dn0"):
                _ip("-n", lnk, "rule", "del", "iif", dev, "lookup", 200, check=False)

    def link_bytes(self, link):
        """Bytes sent each way over the link so far (up: site -> noc), the kernel's counters."""
        lnk = self.ns["lnk:" + link]
        out = {}
        for key, dev in (("up", "dn0"), ("down", "up0")):
            r = _in(lnk, "cat", "/sys/class/net/%s/statistics/tx_bytes" % dev, check=False)
            out[key] = int(r.stdout.strip() or 0) if r.returncode == 0 else None
        return out

    def stop(self):
        for link in list(self.delaylines):
            try:
                self._stop_delayline(link)
            except Exception:
                pass
        for name in reversed(self.made):
            _ip("netns", "del", name, check=False)
        self.made = []


class LoopbackLab:
    """No privileges for namespaces: everything on 127.0.0.1 in the caller's namespace. A link
    cut is a stop of the brokers behind it (the runner does that); nothing is shaped."""

    kind = "loopback"

    def __init__(self, links, why=None):
        self.links = list(links)
        self.ns = {}
        self.state = {name: {"up": True} for name in self.links}
        self.netem = False
        self.shaping = "none"
        self.mode = "loopback fallback (%s): link cuts are broker stops, no shaping" % (
            why or "no network namespaces"
        )

    def broker_host(self, link):
        return "127.0.0.1"

    def place(self, where):
        return None

    def start(self):
        return self

    def set_link(self, link, up=None, **shape):
        if up is not None:
            self.state[link]["up"] = up
        for k, v in shape.items():
            if v is not None:
                self.state[link][k] = v

    def link_bytes(self, link):
        return {"up": None, "down": None}

    def stop(self):
        pass


class Brokers:
    """The rig's brokers, one mosquitto each behind its link (in noc ns, or on loopback), taken
    down and up by the scenario: `up` {name: bool} is what the truth records."""

    def __init__(self, lab, rig_brokers):
        noc = lab.place("noc")
        self.by_name = {}
        self.up = {}
        for b in rig_brokers:
            host = lab.broker_host(b["link"])
            self.by_name[b["name"]] = Broker(host=host, netns=noc) if noc else Broker()
            self.up[b["name"]] = False

    def start(self):
        for name, broker in self.by_name.items():
            broker.start()
            self.up[name] = True
        return self

    def addresses(self):
        return {name: (br.host, br.port) for name, br in self.by_name.items()}

    def set(self, name, up):
        br = self.by_name[name]
        if up and not self.up[name]:
            br.restart()
        elif not up and self.up[name]:
            br.halt()
        self.up[name] = up


def remove_stale():
    """Delete the namespaces of drills whose process is gone (killed before it could clean up:
    SIGKILL, a killed test runner). Names are hil<pid>s/r/n/l<k>; a live pid's are left."""
    import re

    r = subprocess.run([ns.ip_path(), "netns", "list"], capture_output=True, text=True)
    for line in r.stdout.splitlines():
        m = re.match(r"(hil(\d+)(?:[srn]|l\d+))\b", line.strip())
        if m and not os.path.exists("/proc/%s" % m.group(2)):
            _ip("netns", "del", m.group(1), check=False)


def _repo_root():
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
