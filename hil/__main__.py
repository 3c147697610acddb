"""`python -m hil drill RIG SCENARIO`: run a disaster drill and write its report (host only).

    python -m hil drill hil/rigs/bts-emulated.toml hil/scenarios/storm-short.toml
    python -m hil drill RIG SCENARIO --agent board --out /tmp/drill --links loopback

Exit codes: 0 every criterion held, 1 one failed (the report says which), 2 bad usage, a rig or
scenario file with errors, or an agent kind this checkout cannot run.
"""

import argparse
import os
import signal
import sys
import time


def _interrupt(signum, frame):
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the drill takes down what it made.
    raise KeyboardInterrupt("SIGTERM")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m hil", description="HIL rigs and drills")
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("drill", help="run a scenario on a rig and write its report")
    d.add_argument("rig", help="rig file (TOML), e.g. hil/rigs/bts-emulated.toml")
    d.add_argument("scenario", help="scenario file (TOML), e.g. hil/scenarios/storm-short.toml")
    d.add_argument("--agent", help="pi or board (default: the rig's first kind)")
    d.add_argument("--out", help="report folder (default: drill-out/<scenario>-<rig>-<agent>)")
    d.add_argument("--links", choices=("auto", "netns", "loopback"), default="auto",
                   help="network: namespaces when privileged (auto), or force one")
    d.add_argument("--scale", type=float, help="site seconds per real second (default: the "
                   "scenario's; 1 with real devices)")
    d.add_argument("--realtime", action="store_true", help="run at scale 1 (real hardware)")
    r = sub.add_parser("report", help="rebuild the report of a finished drill")
    r.add_argument("out")
    a = ap.parse_args(argv)
    if a.command == "report":
        from hil.drill import report

        return report.main([a.out])
    from hil.drill.agents import AgentUnavailable
    from hil.drill.runner import Drill, DrillError
    from hil.drill.spec import SpecError, load_rig, load_scenario

    try:
        rig = load_rig(a.rig)
        scn = load_scenario(a.scenario, rig)
    except SpecError as e:
        for line in e.lines:
            sys.stderr.write("drill: %s\n" % line)
        return 2
    kind = a.agent or rig.agent["kind"][0]
    if kind not in rig.agent["kind"]:
        sys.stderr.write("drill: the rig %s runs %s, not %r\n" % (
            a.rig, " or ".join(rig.agent["kind"]), kind))
        return 2
    out = a.out or os.path.join("drill-out", "%s-%s-%s" % (scn.name, rig.name, kind))
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        verdict = Drill(rig, scn, out, agent_kind=kind, links=a.links, scale=a.scale,
                        realtime=a.realtime).run()
    except (AgentUnavailable, DrillError) as e:
        sys.stderr.write("drill: %s\n" % e)
        return 2
    with open(os.path.join(out, "summary.md")) as f:
        text = f.read()
    sys.stdout.write(text.split("\nReadings received")[0] + "\n")
    print("drill: %s in %.0f s; report: %s/summary.md, plot: %s/timeline.png" % (
        "PASS" if verdict["pass"] else "FAIL", time.monotonic() - started, out, out))
    return 0 if verdict["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
