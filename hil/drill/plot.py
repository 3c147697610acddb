"""The drill's timeline plot (host only, matplotlib): one picture of the whole run in site hours.

Panels, top to bottom: site power (mains, the agent's power, cut-off), battery (the model's
charge; the agent's runtime estimate against the model's truth), links (each link, each broker,
the agent's uplink as it reported it), the agent's queue depth, alarm events (made and
delivered: a line joins the two), readings received upstream (by the time they were taken and by
the time they arrived: the gap between the two curves is the backlog).
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from hil.drill import rundata as rp  # noqa: E402

GREEN, RED, GREY, BLUE, ORANGE = "#2e7d32", "#c62828", "#9e9e9e", "#1565c0", "#ef6c00"


def _spans(points):
    """[(t, bool)] -> [(start, end, bool)]"""
    out = []
    for i, (t, v) in enumerate(points):
        end = points[i + 1][0] if i + 1 < len(points) else None
        out.append((t, end, v))
    return out


def _band(ax, y, spans, end, on_color, off_color, label):
    for a, b, v in spans:
        b = end if b is None else b
        if b > a:
            ax.broken_barh([(a / 3600, (b - a) / 3600)], (y - 0.35, 0.7),
                           facecolors=on_color if v else off_color)  # fmt: skip
    ax.text(-0.01, y, label, transform=ax.get_yaxis_transform(), ha="right", va="center",
            fontsize=8)  # fmt: skip


def timeline(run, v, path):
    end = run.truth[-1]["t"] if run.truth else run.meta["duration_s"]
    ratios = [1.1, 1.6, 1.3, 1, 1.4, 1.2]
    fig, axes = plt.subplots(6, 1, figsize=(13, 15), sharex=True,
                             gridspec_kw={"height_ratios": ratios})  # fmt: skip
    m = run.meta
    fig.suptitle("%s on %s, %s agent: %s  (%.1f h of site time at %gx; %s)" % (
        m["scenario_name"], m["rig_name"], m["agent"], "PASS" if v["pass"] else "FAIL",
        end / 3600, m["scale"], m["network"]), fontsize=11)  # fmt: skip

    # 1. site power
    ax = axes[0]
    rows = []
    devs = sorted({d for s in run.truth for d in s.get("power", {})})
    for d in devs:
        pts = [(s["t"], s["power"][d]) for s in run.truth if d in s.get("power", {})]
        rows.append(("%s mains" % d, [(t, st["mains"]) for t, st in pts], GREEN, RED))
        rows.append(("%s load on" % d, [(t, not st["cut_off"]) for t, st in pts], GREEN, "black"))
    rows.append(("agent powered", [(s["t"], s["agent"]) for s in run.truth], GREEN, GREY))
    for i, (label, pts, on, off) in enumerate(rows):
        _band(ax, len(rows) - i, _spans(pts), end, on, off, label)
    ax.set_yticks([])
    ax.set_ylim(0.3, len(rows) + 0.7)
    ax.set_title("site power (green on, red mains lost, black load cut off, grey agent off)",
                 fontsize=9, loc="left")  # fmt: skip

    # 2. battery and runtime
    ax = axes[1]
    dev = rp.truth_device(run)
    if dev:
        pts = [(s["t"] / 3600, s["power"][dev]["soc"]) for s in run.truth if dev in s["power"]]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color=GREY, label="%s charge, model (%%)"
                % dev)  # fmt: skip
        ax.set_ylabel("charge %", fontsize=8)
        ax.set_ylim(-5, 105)
        ax2 = ax.twinx()
        tr = [(s["t"] / 3600, s["power"][dev]["runtime_left"] / 3600) for s in run.truth
              if dev in s["power"] and s["power"][dev]["runtime_left"] is not None]  # fmt: skip
        ax2.plot([p[0] for p in tr], [p[1] for p in tr], color="black", lw=2,
                 label="runtime left, model truth (h)")  # fmt: skip
        est = rp.series(run, "site", "site.runtime")
        ax2.scatter([t / 3600 for t, _ in est], [x / 3600 for _, x in est], s=4, color=ORANGE,
                    label="runtime, agent's estimate as received (h)", zorder=3)  # fmt: skip
        ax2.set_ylabel("hours", fontsize=8)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper right")
    ax.set_title("battery: charge, and the agent's runtime estimate against the model",
                 fontsize=9, loc="left")  # fmt: skip

    # 3. links, brokers, uplink
    ax = axes[2]
    rows = []
    for name in run.meta["links"]:
        rows.append(("link %s" % name, [(s["t"], s["links"].get(name, True)) for s in run.truth]))
    for b in run.meta["brokers"]:
        pts = [(s["t"], s["brokers"].get(b["name"], True)) for s in run.truth]
        rows.append(("broker %s" % b["name"], pts))
    con = rp.series(run, "agent", "agent.uplink.connected")
    if con:
        rows.append(("agent uplink (reported)", [(t, bool(x)) for t, x in con]))
    spans = rp.usability(run)
    use = []
    for a, b in spans:
        use.append((run.t_of_rt(a), True))
        if b != float("inf"):
            use.append((run.t_of_rt(b), False))
    rows.append(("usable (criterion 2)", [(0.0, False)] + use))
    for i, (label, pts) in enumerate(rows):
        _band(ax, len(rows) - i, _spans(pts), end, BLUE, RED, label)
    ax.set_yticks([])
    ax.set_ylim(0.3, len(rows) + 0.7)
    ax.set_title("links and brokers (blue up, red down)", fontsize=9, loc="left")

    # 4. queue depth
    ax = axes[3]
    q = rp.series(run, "agent", "agent.queue.depth")
    ax.plot([t / 3600 for t, _ in q], [x for _, x in q], color=BLUE, lw=1)
    ax.set_ylabel("records", fontsize=8)
    ax.set_title("the agent's queue depth (its own health readings, by the time taken)",
                 fontsize=9, loc="left")  # fmt: skip

    # 5. alarms
    ax = axes[4]
    d = v["alarms"]["deliveries"]
    ids = sorted({a["alarm"] for a in d if a["alarm"]})
    for a in d:
        if a["t"] is None or a["alarm"] not in ids:
            continue
        y = ids.index(a["alarm"])
        arrived = run.t_of_rt(a["arrived_rt"]) / 3600
        color = RED if a["event"] == "raise" else GREEN
        ax.plot([a["t"] / 3600, arrived], [y, y], color=color, lw=1)
        ax.scatter([a["t"] / 3600], [y], marker="o", s=14, color=color, zorder=3)
        ax.scatter([arrived], [y], marker="|", s=60, color="black", zorder=3)
    ax.set_yticks(range(len(ids)))
    ax.set_yticklabels([i.split("/")[0] + " " + i.split("/")[-1] for i in ids], fontsize=6)
    ax.set_title("alarm events: made (dot: red raise, green clear) and received (bar)",
                 fontsize=9, loc="left")  # fmt: skip

    # 6. readings upstream
    ax = axes[5]
    made, arrived, seen = [], [], set()
    for msg in run.noc:
        if msg.get("topic") != "data":
            continue
        for r in msg.get("records") or ():
            if r.get("seq") in seen:
                continue
            seen.add(r.get("seq"))
            t = run.t_of_record(r)
            if t is not None:
                made.append(t / 3600)
            arrived.append(run.t_of_rt(msg["rt"]) / 3600)
    made.sort()
    arrived.sort()
    ax.plot(made, range(len(made)), color=GREY, label="by the time taken")
    ax.plot(arrived, range(len(arrived)), color=BLUE, label="by the time received")
    ax.set_ylabel("readings", fontsize=8)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("readings received upstream (cumulative, unique seqs)", fontsize=9, loc="left")
    ax.set_xlabel("site time (hours from the start)")
    ax.set_xlim(0, end / 3600)
    for a in axes:
        a.grid(axis="x", alpha=0.3)
        a.tick_params(labelsize=7)
    fig.tight_layout(rect=(0.06, 0, 1, 0.98))
    fig.savefig(path, dpi=90)
    plt.close(fig)
