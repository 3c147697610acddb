"""The fleet in the Prometheus text exposition format (version 0.0.4), for GET /metrics.

One series per site and metric, the site id in the `site` label; names carry their unit
(`_seconds`, `_ratio`, `_volts`) and counters end in `_total`, so Grafana and Alertmanager work
unchanged (`promtool check metrics` passes: tests/host/test_fleet_metrics.py). An enum is the
current state as a label on a series of value 1 (`site_agent_power_source{source="battery"}`),
one series per site; alarm counts are one series per site and severity, zeros included.
A site that never reported a value has no series for it (absent, not 0), and neither has a
value that is unknown (contract v2 compact: a consumer that joined the site's stream mid-way
knows it again at the stream's integrity refresh; `site_agent_values_unknown` counts them).
With --partition, a site whose data another instance decodes (row "elsewhere") has only the
series of the retained topics here (status, silence, alarms, info): scrape every instance, and
each site's values come once, from the instance that reads them. The names are listed in
docs/fleet.md.
"""

from agent.fleet.urgency import SEVERITIES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# name, type, help, row key (see Fleet.summary), how to turn the row's value into the sample.
SITE_GAUGES = (
    ("site_agent_up", "Whether the site's agent is connected to the broker per its retained "
     "status: 1 online (birth), 0 offline (last will or goodbye).", "status",
     lambda v: {"online": 1, "offline": 0}.get(v)),
    ("site_agent_silent", "1 when the site is offline or nothing was heard from it for the "
     "consumer's --silent-after seconds.", "silent", lambda v: 1 if v else 0),
    ("site_agent_last_heard_timestamp_seconds", "When the site was last heard from: its newest "
     "record's time or the arrival of its last live message, Unix time.", "last_heard",
     lambda v: v),
    ("site_agent_time_estimated", "1 when the site's newest record carries an estimated time "
     "(its clock was not trusted when it was taken).", "time_est", lambda v: 1 if v else 0),
    ("site_agent_battery_charge_ratio", "Lowest state of charge any battery device at the site "
     "reports (site.battery_charge), 0 to 1.", "charge", lambda v: v / 100.0),
    ("site_agent_battery_voltage_volts", "Battery voltage (battery.voltage, magnitude) of the "
     "site's main bank, the device in the device label.", "voltage", abs),
    ("site_agent_battery_runtime_seconds", "Runtime left as the site last reported it "
     "(site.runtime), at the time of that report.", "runtime_reported", lambda v: v),
    ("site_agent_battery_runtime_estimated", "1 when the runtime is the agent's estimate from "
     "the discharge trend, 0 when a device reported it.", "runtime_est",
     lambda v: 1 if v else 0),
    ("site_agent_on_battery_seconds", "Seconds the site has been on battery, 0 on any other "
     "source (site.on_battery_s, advanced to now).", "on_battery_s", lambda v: v),
)
ENUMS = (
    ("site_agent_power_source", "What powers the site (site.power_source): the current state "
     "in the source label (mains, battery, generator, solar, unknown).", "power", "source"),
    ("site_agent_backhaul", "The site's backhaul (site.backhaul): the current state in the state "
     "label (up, degraded, down, unknown).", "backhaul", "state"),
)
INFO_LABELS = ("name", "kind", "commune", "province", "contract")
# Row keys that come from the site's readings (not its retained status or alarm set): absent for
# a site whose data another instance decodes (--partition).
READING_KEYS = frozenset(("time_est", "charge", "voltage", "runtime_reported", "runtime_est",
                          "on_battery_s", "power", "backhaul"))  # fmt: skip


def escape_label(v):
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


_LABELS = {}


def _site_label(site_id):
    """'site="<id>"', escaped once per site (the ids do not change)."""
    lab = _LABELS.get(site_id)
    if lab is None:
        if len(_LABELS) > 1000000:
            _LABELS.clear()
        lab = _LABELS[site_id] = 'site="%s"' % escape_label(site_id)
    return lab


def _escape_help(v):
    return v.replace("\\", "\\\\").replace("\n", "\\n")


def _num(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    return repr(float(v))


def render(rows, counts, connected, sites_known):
    """The exposition text for summary rows (Fleet.rows) and the consumer's own counters."""
    out = []
    site_labels = [(r, _site_label(r["id"])) for r in rows]
    own = [(r, lab) for r, lab in site_labels if r.get("elsewhere") is None]
    for name, help_text, key, conv in SITE_GAUGES:
        out.append("# HELP %s %s\n# TYPE %s gauge\n" % (name, _escape_help(help_text), name))
        for r, lab in own if key in READING_KEYS else site_labels:
            v = r.get(key)
            if v is None and key not in ("silent", "time_est", "runtime_est"):
                continue
            if key == "runtime_est" and r.get("runtime_reported") is None:
                continue
            sample = conv(v)
            if sample is None or isinstance(sample, str):
                continue
            if key == "voltage" and r.get("voltage_device"):
                lab = '%s,device="%s"' % (lab, escape_label(r["voltage_device"]))
            out.append("%s{%s} %s\n" % (name, lab, _num(sample)))
    for name, help_text, key, label in ENUMS:
        out.append("# HELP %s %s\n# TYPE %s gauge\n" % (name, _escape_help(help_text), name))
        for r, lab in own:
            v = r.get(key)
            if r.get("unknown") and key in r["unknown"]:
                v = "unknown"
            if isinstance(v, str) and v:
                out.append('%s{%s,%s="%s"} 1\n' % (name, lab, label, escape_label(v)))
    name = "site_agent_values_unknown"
    out.append("# HELP %s How many of the site's shown values (power, charge, runtime, backhaul, "
               "time on battery, voltage) are unknown: newer readings exist whose values this "
               "consumer cannot rebuild yet, having joined the site's contract v2 compact stream "
               "mid-way; 0 again at the stream's integrity refresh.\n# TYPE %s gauge\n"
               % (name, name))  # fmt: skip
    for r, lab in own:
        out.append("%s{%s} %d\n" % (name, lab, len(r.get("unknown") or ())))
    name = "site_agent_alarms_active"
    out.append("# HELP %s Active alarms at the site by severity, from its retained alarm set "
               "and alarm events.\n# TYPE %s gauge\n" % (name, name))
    for r, lab in site_labels:
        for sev in SEVERITIES:
            out.append('%s{%s,severity="%s"} %d\n' % (name, lab, sev, r["alarms"][sev]))
    name = "site_agent_site_info"
    out.append("# HELP %s The site's name, kind and place from its birth message (value 1; "
               "join on site).\n# TYPE %s gauge\n" % (name, name))
    for r, lab in site_labels:
        extra = "".join(',%s="%s"' % (k, escape_label(r[k])) for k in INFO_LABELS if r.get(k))
        for k, label in (("lat", "latitude"), ("lon", "longitude")):
            if r.get(k) is not None:
                extra += ',%s="%s"' % (label, r[k])
        out.append("%s{%s%s} 1\n" % (name, lab, extra))
    own = (
        ("site_agent_fleet_sites", "gauge", "Sites the consumer knows.", sites_known),
        ("site_agent_fleet_connected", "gauge", "1 while the consumer holds its broker "
         "connection.", 1 if connected else 0),
        ("site_agent_fleet_messages_total", "counter", "MQTT messages applied.",
         counts.get("messages", 0)),
        ("site_agent_fleet_duplicate_records_total", "counter", "Records dropped as duplicates "
         "by (site, seq).", counts.get("duplicates", 0)),
        ("site_agent_fleet_bad_messages_total", "counter", "Messages that did not decode under "
         "the contract.", counts.get("bad_messages", 0)),
        ("site_agent_fleet_rejected_records_total", "counter", "Records whose site differs from "
         "their topic's.", counts.get("records_rejected", 0)),
        ("site_agent_fleet_refused_sites_total", "counter", "Messages from new sites refused "
         "past --max-sites.", counts.get("sites_refused", 0)),
        ("site_agent_fleet_unresolved_records_total", "counter", "Contract v2 compact readings "
         "whose values this consumer could not rebuild (it joined the stream mid-way or missed "
         "a message).", counts.get("records_unresolved", 0)),
        ("site_agent_fleet_duplicate_messages_total", "counter", "Contract v2 compact stream "
         "messages delivered twice, skipped.", counts.get("duplicate_messages", 0)),
        ("site_agent_fleet_elsewhere_messages_total", "counter", "Data messages of sites in "
         "another instance's --partition, not decoded here.",
         counts.get("messages_elsewhere", 0)),
    )
    for name, kind, help_text, value in own:
        out.append("# HELP %s %s\n# TYPE %s %s\n%s %s\n" % (name, help_text, name, kind, name,
                                                           _num(value)))  # fmt: skip
    name = "site_agent_fleet_records_total"
    out.append("# HELP %s Records applied, duplicates not included, by batch kind (data, alarm; "
               "state: the retained copies).\n# TYPE %s counter\n" % (name, name))
    for kind in ("data", "alarm", "state"):
        out.append('%s{kind="%s"} %d\n' % (name, kind, counts.get("records_" + kind, 0)))
    return "".join(out)
