"""A drill's run as its report reads it (host only): the files hil/drill/runner.py writes, the
clock steps the drill made, the spans during which some broker was usable, and a metric's series
as the operations centre received it.

    run = Run("out/typhoon")     # run.json, events.jsonl, truth.jsonl, noc.jsonl, backlog.jsonl
    spans = usability(run)       # [(rt start, rt end)]

The criteria that judge a run are in hil/drill/criteria.py, the report in hil/drill/report.py.
"""

import json
import os

# --- loading -------------------------------------------------------------------------------------


def open_text(path):
    """A text file, or its gzipped copy (path + ".gz", as the reference report keeps them)."""
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        import gzip

        return gzip.open(path + ".gz", "rt", errors="replace")
    return open(path, errors="replace")


def _lines(path):
    out = []
    if not os.path.exists(path) and not os.path.exists(path + ".gz"):
        return out
    with open_text(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass  # a line cut by a kill
    return out


class Run:
    def __init__(self, out):
        self.out = out
        with open(os.path.join(out, "run.json")) as f:
            self.meta = json.load(f)
        self.events = _lines(os.path.join(out, "events.jsonl"))
        self.truth = _lines(os.path.join(out, "truth.jsonl"))
        self.noc = _lines(os.path.join(out, "noc.jsonl"))
        self.backlog = _lines(os.path.join(out, "backlog.jsonl"))
        self.log_path = os.path.join(out, "agent.log")
        self.scale = self.meta["scale"]
        self.origin = self.meta["origin"]
        self.epoch = self.meta["epoch"]
        self.end_rt = self.truth[-1]["rt"] if self.truth else self.origin
        self._jumps = self._clock_jumps()

    def t_of_rt(self, rt):
        return (rt - self.origin) * self.scale

    def rt_of_t(self, t):
        return self.origin + t / self.scale

    def t_of_record(self, rec):
        """Site seconds from the start for a record's time, the drill's clock steps taken out."""
        t = rec.get("time")
        if not isinstance(t, (int, float)):
            return None
        t = t - self.epoch
        for a, b, step in self._jumps:
            if a + step <= t < b + step:
                return t - step
        return t

    def in_clock_step(self, rec, margin=300.0):
        """Whether a record was made while the drill had stepped the site's clock (or just
        after: the agent sees a step within a poll): its time says nothing reliable then."""
        t = rec.get("time")
        if not isinstance(t, (int, float)):
            return False
        t -= self.epoch
        return any(a <= t <= b + max(step, 0) + margin for a, b, step in self._jumps)

    def _clock_jumps(self):
        """[(t from, t to, step)] while the agent's clock carried a drill's step. The Pi's system
        clock follows the drill's step file at once; the board takes its time from SNTP, so it
        carries a step from its next sync after the drill's server stepped until its first sync
        after the server came back (its log's `clock: step` line) or its next boot."""
        out, start, step = [], None, 0.0
        for e in self.events:
            if e["do"] == "clock_jump":
                start, step = e["t"], step + float(e.get("by", 0) and _signed(e.get("by")))
            elif e["do"] == "clock_back" and start is not None:
                out.append((start, e["t"], step))
                start, step = None, 0.0
        if start is not None:
            out.append((start, float("inf"), step))
        if self.meta.get("agent") == "board":
            out = [(a, self._board_step_end(b, step), step) for a, b, step in out]
        return out

    def _board_step_end(self, t_back, step):
        """When the board's clock left a step the drill's server took back at t_back."""
        if t_back == float("inf"):
            return t_back
        boots = [e["t"] for e in self.events if e["do"] == "agent_boot" and e["t"] >= t_back]
        end = min(boots) if boots else float("inf")
        for rt, by in _log_steps(self.log_path):
            t = self.t_of_rt(rt)
            if t >= t_back and abs(by + step) <= max(5.0, 0.01 * abs(step)):
                return min(end, t)
        return end


def _log_steps(log_path):
    """[(real time, seconds)] of the agent's `clock: step by_s=` lines. The log's times are whole
    seconds: each is taken as the end of its second (the latest the step can have been)."""
    import calendar
    import time

    out = []
    if not os.path.exists(log_path) and not os.path.exists(log_path + ".gz"):
        return out
    with open_text(log_path) as f:
        for line in f:
            if " clock: step " not in line or "by_s=" not in line:
                continue
            try:
                when = calendar.timegm(time.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%SZ"))
                by = float(line.split("by_s=", 1)[1].split()[0])
            except (ValueError, IndexError):
                continue
            out.append((when + 1.0, by))
    return out


def _signed(text):
    from hil.drill.spec import duration

    return duration(text, "by", [], signed=True)


# --- intervals of usability ----------------------------------------------------------------------


def usability(run):
    """[(rt start, rt end)] during which the agent had power and some broker was reachable."""
    links = {n: bool(s.get("up", True)) for n, s in run.meta["links"].items()}
    brokers = {b["name"]: True for b in run.meta["brokers"]}
    link_of = {b["name"]: b["link"] for b in run.meta["brokers"]}
    agent = False
    changes = []

    def ok():
        return agent and any(brokers[b] and links[link_of[b]] for b in brokers)

    state = False
    for e in sorted(run.events, key=lambda e: e["rt"]):
        do = e["do"]
        if do in ("link_up", "link_down"):
            links[e["link"]] = do == "link_up"
        elif do == "link_shape" and "up" in e:
            links[e["link"]] = bool(e["up"])
        elif do in ("broker_up", "broker_down"):
            brokers[e["broker"]] = do == "broker_up"
        elif do == "agent_boot":
            agent = True
        elif do in ("power_cut", "supply_lost", "agent_exited", "agent_stop"):
            agent = False
        now = ok()
        if now != state:
            changes.append((e["rt"], now))
            state = now
    spans, start = [], None
    for rt, up in changes:
        if up:
            start = rt
        elif start is not None:
            spans.append((start, rt))
            start = None
    if start is not None:
        spans.append((start, float("inf")))
    return spans


def usable_from(spans, rt):
    """The earliest real time >= rt at which a link was usable (None: never again)."""
    for a, b in spans:
        if b > rt:
            return max(a, rt)
    return None


# --- series received upstream ------------------------------------------------------------------


def series(run, device, metric, skip_steps=False):
    out = []
    for m in run.noc:
        if m.get("topic") != "data":
            continue
        for r in m.get("records") or ():
            if r.get("device") == device and r.get("metric") == metric:
                if skip_steps and run.in_clock_step(r):
                    continue
                t = run.t_of_record(r)
                if t is not None and isinstance(r.get("value"), (int, float)):
                    out.append((t, r["value"], r.get("seq")))
    seen, uniq = set(), []
    for t, v, s in sorted(out):
        if s not in seen:
            seen.add(s)
            uniq.append((t, v))
    return uniq


def truth_device(run):
    dev = run.meta.get("powered_by")
    if dev:
        return dev
    for s in run.truth:
        for d in s.get("power", {}):
            return d
    return None
