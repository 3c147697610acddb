"""The drill's criteria, each a function of a Run (hil/drill/rundata.py) returning its figures
and "pass" (True, False, or None when the run had nothing to judge) (host only).

Criteria (docs/drill.md says why each is measured this way):
1. No confirmed reading lost. Confirmed, per boot: the seqs from the store's first seq of that
   boot (the uplink's "started confirmed_seq=X" line, X + 1) up to its last "stored
   confirmed_seq=Y" line. Each must have reached the operations centre, or still be in the store
   at the end (backlog.jsonl), or be covered by the store's own declared thinning and dropping
   (agent.queue.thinned, agent.queue.dropped, which it reports upstream).
2. Every alarm event delivered within 30 s of a link to any broker being usable: usable means the
   agent has power, and some broker is running behind a link that is up. The latency counts
   from the later of the event's time and the start of the usable span it arrived in; a usable
   span of 30 s or more that it waited through counts against it from that span's start.
3. The current site state retained upstream within 30 s: after every change of mains and every
   start of usability, the retained `state` the centre holds 30 s later (plus one poll
   interval, the time the agent needs to see a change) shows the site's power source as it is.
4. The backlog inside the backup link's byte budget: per budget window, the bytes received
   through each metered broker, counted as the agent counts them (PUBLISH packets of data,
   alarm, state and alarms; status and replies are not budgeted), never pass the limit with
   routine data (alarm events and state may overdraw it).
5. The runtime estimate within 10 % of the emulator's truth over the last half of each
   discharge (estimates with at least 5 minutes left: near the end a minute is a large share;
   estimates made while the drill had stepped the site's clock carry a wrong time and are left
   out, counted).
6. Heap or RSS without growth: within the longest boot, the median of the last quarter of the
   agent.rss (board: agent.heap_free) samples within 10 % of the second quarter's.
"""

import os

from hil.drill.rundata import open_text, series, truth_device, usable_from

LIMIT_S = 30.0
RUNTIME_TOL = 0.10
RUNTIME_MARGIN_S = 300.0
RSS_TOL = 0.10
NO_ESTIMATE_S = 3 * 3600.0  # a discharge this long must have estimates in its last half


# --- the criteria --------------------------------------------------------------------------------


def confirmed_by_boot(log_path):
    """[(first seq, last confirmed seq)] per boot, from the agent's log."""
    boots = []
    cur = None
    if not os.path.exists(log_path) and not os.path.exists(log_path + ".gz"):
        return boots
    with open_text(log_path) as f:
        for line in f:
            if line.startswith("### drill: boot"):
                if cur is not None:
                    boots.append(cur)
                cur = [None, None]
                continue
            if cur is None or "confirmed_seq=" not in line:
                continue
            value = line.split("confirmed_seq=", 1)[1].split()[0]
            try:
                seq = int(value)
            except ValueError:
                continue  # "None": a queue without a notion of it
            if " uplink: started" in line and cur[0] is None:
                cur[0] = seq + 1
            elif " uplink: stored" in line:
                cur[1] = seq if cur[1] is None else max(cur[1], seq)
    if cur is not None:
        boots.append(cur)
    return [(a, b) for a, b in boots if a is not None and b is not None and b >= a]


def check_loss(run):
    received = {}
    declared = {"agent.queue.thinned": 0, "agent.queue.dropped": 0}
    for m in run.noc:
        if m.get("topic") not in ("data", "alarm"):
            continue
        for r in m.get("records") or ():
            s = r.get("seq")
            if s is not None:
                received[s] = received.get(s, 0) + 1
            if r.get("metric") in declared and isinstance(r.get("value"), int):
                declared[r["metric"]] = max(declared[r["metric"]], r["value"])
    backlog = {r.get("seq") for r in run.backlog}
    confirmed = 0
    missing = []
    for a, b in confirmed_by_boot(run.log_path):
        for s in range(a, b + 1):
            confirmed += 1
            if s not in received and s not in backlog:
                missing.append(s)
    excused = declared["agent.queue.thinned"] + declared["agent.queue.dropped"]
    lost = max(0, len(missing) - excused)
    return {
        "pass": lost == 0 and confirmed > 0,
        "confirmed": confirmed,
        "received_unique": len(received),
        "received_twice_or_more": sum(1 for n in received.values() if n > 1),
        "in_store_at_end": len(backlog),
        "missing": len(missing),
        "missing_first": missing[:10],
        "declared_thinned": declared["agent.queue.thinned"],
        "declared_dropped": declared["agent.queue.dropped"],
        "lost": lost,
    }


def _dist(values):
    if not values:
        return {"n": 0}
    v = sorted(values)

    def q(p):
        return v[min(len(v) - 1, int(round(p * (len(v) - 1))))]

    return {"n": len(v), "min": v[0], "median": q(0.5), "p95": q(0.95), "max": v[-1]}


def latency(spans, made, arrived):
    """Seconds an alarm waited while it could have gone: from the start of the usable span in
    which it arrived (or from when it was made, if later). A span of at least LIMIT_S that it
    waited through counts from that span's start instead: it should have gone then. Usable
    spans shorter than that (a link that flapped) are not held against it."""
    for a, b in spans:
        if b <= made:
            continue
        start = max(a, made)
        if arrived < b:
            return max(0.0, arrived - start), start
        if b - start >= LIMIT_S:
            return arrived - start, start
    return None, None


def alarm_deliveries(run, spans):
    first = {}
    for m in run.noc:
        if m.get("topic") != "alarm":
            continue
        for r in m.get("records") or ():
            if r.get("seq") is not None and r["seq"] not in first:
                first[r["seq"]] = (m["rt"], m["broker"], r)
    out = []
    for seq, (arrived, broker, r) in sorted(first.items()):
        t = run.t_of_record(r)
        made = run.rt_of_t(t) if t is not None else None
        lat, start = latency(spans, made, arrived) if made is not None else (None, None)
        out.append({"seq": seq, "alarm": r.get("alarm"), "event": r.get("event"), "t": t,
                    "made_rt": made, "usable_rt": start, "arrived_rt": arrived,
                    "broker": broker, "latency_s": lat})  # fmt: skip
    return out


def check_alarms(run, spans):
    d = alarm_deliveries(run, spans)
    lat = [a["latency_s"] for a in d if a["latency_s"] is not None]
    late = [a for a in d if a["latency_s"] is not None and a["latency_s"] > LIMIT_S]
    stuck = [r for r in run.backlog if r.get("lane") == "alarm"]
    return {
        "pass": bool(d) and not late and not stuck,
        "events": len(d),
        "latency_s": _dist(lat),
        "late": [{"alarm": a["alarm"], "event": a["event"], "latency_s": round(a["latency_s"], 1),
                  "t_h": round(a["t"] / 3600, 2)} for a in late][:20],  # fmt: skip
        "undelivered_at_end": len(stuck),
        "deliveries": d,
    }


def _power_source(records):
    for r in records or ():
        if r.get("device") == "site" and r.get("metric") == "site.power_source":
            return r.get("value")
    return None


def check_state(run, spans, poll_real_s):
    """Every change of mains, and every start of usability, is followed by a retained state
    message showing the power source as it is, within 30 s (+ one poll) of usability."""
    states = [(m["rt"], _power_source(m.get("records"))) for m in run.noc
              if m.get("topic") == "state"]  # fmt: skip
    mains_events = [(e["rt"], e["do"] == "mains_on") for e in run.events
                    if e["do"] in ("mains_on", "mains_off") and not e.get("device")]  # fmt: skip
    supply = {e["rt"] for e in run.events if e["do"] in ("supply_lost",)}

    def mains_at(rt):
        on = True
        for when, value in mains_events:
            if when <= rt:
                on = value
        return on

    moments = [rt for rt, _ in mains_events] + [a for a, _b in spans]
    checks = []
    for m in sorted(set(moments)):
        start = usable_from(spans, m)
        if start is None or any(m <= s <= m + 1 for s in supply):
            continue
        end = next((b for a, b in spans if a <= start < b), start)
        deadline = start + LIMIT_S + poll_real_s
        if end < deadline:
            continue  # the link went away again before the deadline: nothing to require
        if any(m < when < deadline for when, _v in mains_events):
            continue  # the truth changed again before the deadline: that change is checked
        want = "mains" if mains_at(start) else "battery"
        # What the centre holds retained at the deadline: the last state received by then.
        held = [src for rt, src in states if rt <= deadline]
        ok = bool(held) and held[-1] == want
        got = next((rt for rt, src in states if rt >= m and src == want), None)
        delay = 0.0 if ok and (got is None or got > deadline) else (
            None if got is None else max(0.0, got - start))  # fmt: skip
        checks.append({"rt": m, "t_h": round(run.t_of_rt(m) / 3600, 2), "want": want,
                       "delay_s": None if delay is None else round(delay, 1),
                       "ok": ok})  # fmt: skip
    bad = [c for c in checks if not c["ok"]]
    delays = [c["delay_s"] for c in checks if c["delay_s"] is not None]
    return {"pass": bool(checks) and not bad, "checks": len(checks), "delay_s": _dist(delays),
            "failed": bad[:20]}  # fmt: skip


def check_budget(run):
    out = {"pass": True, "brokers": []}
    window_s = {"hour": 3600.0, "day": 86400.0}
    for b in run.meta["brokers"]:
        link = run.meta["links"].get(b["link"], {})
        limit = int(link.get("budget_bytes") or 0)
        if not limit:
            continue
        w = window_s[link.get("budget_window", "day")]
        used = {}
        worst = 0
        over = 0
        counted = {"data": 0, "alarm": 0, "state": 0, "alarms": 0}
        status = 0
        for m in run.noc:
            if m.get("broker") != b["name"] or "bytes" not in m:
                continue
            kind = m.get("topic")
            if kind not in counted:
                status += m["bytes"]
                continue
            site_wall = run.epoch + run.t_of_rt(m["rt"])
            win = int(site_wall // w)
            used[win] = used.get(win, 0) + m["bytes"]
            counted[kind] += m["bytes"]
            if kind == "data" and used[win] > limit:
                over += 1
            worst = max(worst, used[win])
        ok = over == 0
        out["pass"] = out["pass"] and ok
        out["brokers"].append({"broker": b["name"], "link": b["link"], "limit": limit,
                               "window": link.get("budget_window", "day"),
                               "worst_window_bytes": worst, "routine_over_limit": over,
                               "bytes_by_topic": counted, "status_reply_bytes": status,
                               "windows": len(used), "pass": ok})  # fmt: skip
        lb = [s.get("link_bytes", {}).get(b["link"]) for s in run.truth]
        lb = [x for x in lb if x and x.get("up") is not None]
        if len(lb) >= 2:
            out["brokers"][-1]["link_bytes_up"] = lb[-1]["up"] - lb[0]["up"]
            out["brokers"][-1]["link_bytes_down"] = lb[-1]["down"] - lb[0]["down"]
    if not out["brokers"]:
        out["pass"] = None  # nothing metered in this rig and scenario
    return out


def discharges(run, dev):
    """[(t start, t end, ended by cut-off)] of the device's battery discharges, from the truth."""
    spans, start = [], None
    for s in run.truth:
        st = s.get("power", {}).get(dev)
        if st is None:
            continue
        if st["on_battery"] and start is None:
            start = s["t"]
        elif not st["on_battery"] and start is not None:
            spans.append((start, s["t"], bool(st["cut_off"])))
            start = None
    return spans


def true_left(run, dev, t):
    prev = None
    for s in run.truth:
        st = s.get("power", {}).get(dev)
        if st is None:
            continue
        if s["t"] >= t:
            if prev is None or prev[1] is None or st["runtime_left"] is None:
                return st["runtime_left"] if abs(s["t"] - t) < 1 else None
            (t0, v0), (t1, v1) = prev, (s["t"], st["runtime_left"])
            return v0 + (v1 - v0) * (t - t0) / (t1 - t0) if t1 > t0 else v1
        prev = (s["t"], st["runtime_left"])
    return None


def check_runtime(run):
    dev = truth_device(run)
    est = series(run, "site", "site.runtime", skip_steps=True)
    skipped = len(series(run, "site", "site.runtime")) - len(est)
    result = {"pass": None, "device": dev, "discharges": [], "estimates": len(est),
              "skipped_clock_step": skipped}  # fmt: skip
    if dev is None:
        return result
    worst_all = None
    for a, b, cut in discharges(run, dev):
        mid = (a + b) / 2.0
        errs = []
        for t, v in est:
            if mid <= t <= b:
                truth = true_left(run, dev, t)
                if truth is not None and truth >= RUNTIME_MARGIN_S:
                    errs.append(abs(v - truth) / truth)
        worst = max(errs) if errs else None
        result["discharges"].append({"from_h": round(a / 3600, 2), "to_h": round(b / 3600, 2),
                                     "cut_off": cut, "estimates": len(errs),
                                     "worst_error": worst})  # fmt: skip
        if errs:
            worst_all = max(worst_all or 0.0, worst)
        elif b - a >= NO_ESTIMATE_S:
            result["pass"] = False  # a long discharge and not one estimate in its last half
            result.setdefault("without_estimate", []).append((round(a / 3600, 2),
                                                              round(b / 3600, 2)))  # fmt: skip
    if worst_all is not None and result["pass"] is not False:
        result["pass"] = worst_all <= RUNTIME_TOL
        result["worst_error"] = worst_all
    return result


def check_memory(run):
    boots = sorted(e["t"] for e in run.events if e["do"] == "agent_boot")
    metric = "agent.heap_free" if run.meta.get("agent") == "board" else "agent.rss"
    samples = series(run, "agent", metric)
    segs = []
    for i, start in enumerate(boots):
        end = boots[i + 1] if i + 1 < len(boots) else float("inf")
        segs.append([v for t, v in samples if start <= t < end])
    segs = [s for s in segs if len(s) >= 8]
    if not segs:
        return {"pass": None, "metric": metric, "samples": len(samples)}
    longest = max(segs, key=len)
    n = len(longest)

    def med(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2]

    q2 = med(longest[n // 4: n // 2])
    q4 = med(longest[3 * n // 4:])
    growth = (q4 - q2) / q2 if metric == "agent.rss" else (q2 - q4) / q2
    return {"pass": growth <= RSS_TOL, "metric": metric, "samples": n, "second_quarter": q2,
            "last_quarter": q4, "growth": growth, "boots": len(boots)}  # fmt: skip


def readings_summary(run):
    per_device, total, seqs = {}, 0, set()
    for m in run.noc:
        if m.get("topic") != "data":
            continue
        for r in m.get("records") or ():
            total += 1
            if r.get("seq") in seqs:
                continue
            seqs.add(r.get("seq"))
            per_device[r.get("device")] = per_device.get(r.get("device"), 0) + 1
    return {"received": total, "unique": len(seqs), "per_device": per_device}
