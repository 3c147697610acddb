"""The screenshots in docs/fleet.md, taken from a live rig in headless Chromium:

    .venv/bin/python -m hil.fleet_screens docs/fleet

A typhoon night on loopback: the demo site (the real agent against emulated devices) and 40
generated sites across central Vietnam (a third of them speaking contract v2); a band of them
lose mains over a few minutes (drained fast, so that the plots fill in minutes), some lose their
fibre backhaul, one goes silent. Then a second fleet view starts, mid-way through the v2
compact sites' streams: their values are unknown to it until their integrity refresh. Takes
about four minutes.
"""

import os
import sys
import time
import urllib.parse

from agent.fleet.app import FleetApp
from hil.fleet_rig import FleetRig
from hil.webdriver import Browser

STORM = ("Tinh Ky", "Binh Chau", "Nghia Lo", "Duc Pho", "Tam Hai")  # where the eye passes


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0] if argv else "docs/fleet"
    os.makedirs(out, exist_ok=True)
    with FleetRig(generated=40, fast=False, history_step=5.0, history_hours=0.25, v2=14) as rig:
        sim = rig.sim
        hit = [s for s in sim.sites if s.location["commune"] in STORM]
        now = time.time()
        for i, s in enumerate(hit):
            s.mains = False
            s.on_battery_since = now - 60 * (5 + 7 * i)
            s.drain_s = 1200 + 900 * i  # from minutes to hours left
            s.charge = max(15.0, 90.0 - 9 * i)
            if i % 3 == 1:
                s.backhaul = "degraded"
            if i % 4 == 3:
                s.backhaul = "down"
            sim.poke(s.id)
        rig.night_and_no_mains()
        time.sleep(150)  # the plots fill in; the demo site's alarms debounce
        gone = [s for s in hit if s.kind == "bts"][-1]
        sim.go_silent(gone.id)
        time.sleep(8)
        with Browser(width=1600, height=1000) as b:
            b.get(rig.app.url)
            b.wait_for("return document.querySelectorAll('#sites tbody tr').length >= 41", 60)
            time.sleep(1)
            b.screenshot(os.path.join(out, "fleet.png"))
            b.js("location.hash = 'q=quang%20ngai'")
            time.sleep(2)
            b.screenshot(os.path.join(out, "fleet-filtered.png"))
            b.get(rig.app.url + "site/" + hit[0].id)
            b.wait_for("return document.querySelectorAll('.card').length", 60)
            time.sleep(1)
            b.screenshot(os.path.join(out, "site.png"))
            b.get(rig.app.url + "site/demo-bts-01")
            b.wait_for("return document.querySelectorAll('#alarms tbody tr').length", 60)
            time.sleep(1)
            b.screenshot(os.path.join(out, "site-demo.png"))
            late = FleetApp("127.0.0.1", rig.site.broker.port, ("127.0.0.1", 0),
                            history_step=5.0, history_hours=0.25).start()  # fmt: skip
            try:  # the province of a v2 compact site, so that the page shows some
                area = [s for s in sim.sites if s.contract == 2 and s.fmt == "compact"
                        and not s.silent][0].location["province"]  # fmt: skip
                b.get(late.url + "#area=" + urllib.parse.quote(area))
                time.sleep(35)  # the retained topics, then every site's live data once
                b.screenshot(os.path.join(out, "fleet-unknown.png"))
            finally:
                late.stop()
    print("screenshots in %s" % out)


if __name__ == "__main__":
    main()
