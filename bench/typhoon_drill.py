"""The full typhoon drill: 78 site hours on the hardened BTS at 240x (about 20 minutes), with the
Pi agent (or `--agent board`), written as the reference report into docs/drill/typhoon-72h/.

    .venv/bin/python bench/typhoon_drill.py [--agent pi] [--out docs/drill/typhoon-72h]

Runs `python -m hil drill hil/rigs/bts-hardened.toml hil/scenarios/typhoon-72h.toml` into a
scratch folder, then keeps what a reader needs in --out: summary.md, summary.json,
timeline.png, run.json, events.jsonl, truth.jsonl, site.toml, and gzipped the raw
operations-centre data (noc.jsonl.gz) and the agent's log (agent.log.gz): `python -m hil report
docs/drill/typhoon-72h` rebuilds the report from them. Prints the summary. Needs root for the
namespaces (else the loopback fallback, marked in the report).
"""

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
KEEP = ("summary.md", "summary.json", "timeline.png", "run.json", "events.jsonl", "truth.jsonl",
        "site.toml")  # fmt: skip


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agent", default="pi")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "drill", "typhoon-72h"))
    ap.add_argument("--scale", type=float)
    a = ap.parse_args()
    scratch = tempfile.mkdtemp(prefix="typhoon-drill-")
    argv = [sys.executable, "-m", "hil", "drill", "hil/rigs/bts-hardened.toml",
            "hil/scenarios/typhoon-72h.toml", "--agent", a.agent, "--out", scratch]  # fmt: skip
    if a.scale:
        argv += ["--scale", str(a.scale)]
    rc = subprocess.call(argv, cwd=ROOT)
    os.makedirs(a.out, exist_ok=True)
    for name in KEEP:
        if os.path.exists(os.path.join(scratch, name)):
            shutil.copy(os.path.join(scratch, name), os.path.join(a.out, name))
    for name in ("noc.jsonl", "agent.log"):
        with open(os.path.join(scratch, name), "rb") as src:
            with gzip.open(os.path.join(a.out, name + ".gz"), "wb", compresslevel=9) as dst:
                shutil.copyfileobj(src, dst)
    print("kept in %s; the whole run (agent.log, the store) in %s" % (a.out, scratch))
    return rc


if __name__ == "__main__":
    sys.exit(main())
