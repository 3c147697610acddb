"""The operations centre during a drill: subscribe to a site on every broker, write down what
arrives, one JSON line per message (host only; the drill runs it inside its noc namespace).

    python -m hil.drill.observer --out noc.jsonl --prefix site-agent/v1 --site drill-bts-01 \\
        --broker noc-fibre=10.77.3.2:1883 --broker noc-sat=10.77.5.2:1883

Line shapes (`rt` is the real epoch time of arrival, `broker` the broker's name):
    {"rt", "broker", "topic": "data"|"alarm"|"state", "retain", "bytes", "batch", "records": [...]}
    {"rt", "broker", "topic": "status"|"alarms"|"reply", "retain", "bytes", "payload": {...}}
    {"rt", "broker", "topic": ..., "bytes", "undecodable": "<first bytes, hex>"}
    {"rt", "broker", "observer": "connected"|"disconnected"}
`bytes` is the PUBLISH packet the broker delivered as the agent's byte budget counts it
(agent.core.contract.publish_bytes). Records are as decoded from either form (JSON or compact),
so the file is what a server would store. The file is flushed per line: the drill reads it live
(ObserverProcess, the drill's handle on this process).
"""

import argparse
import json
import signal
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt

from agent.core.uplink import contract
from hil.proc import die_with_parent, stop


class Observer:
    def __init__(self, out, prefix, site, brokers):
        self.out = out
        self.filter = "%s/%s/#" % (prefix, site)
        self.lock = threading.Lock()
        self.clients = []
        for name, host, port in brokers:
            c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                            client_id="drill-noc-%s" % name, clean_session=True)  # fmt: skip
            c.reconnect_delay_set(0.2, 1.0)
            c.on_connect = lambda cl, u, f, rc, p=None, n=name: self._connected(cl, n)
            c.on_disconnect = lambda cl, u, f, rc, p=None, n=name: self._write(
                {"rt": time.time(), "broker": n, "observer": "disconnected"})  # fmt: skip
            c.on_message = lambda cl, u, msg, n=name: self._message(n, msg)
            c.connect_async(host, port, 30)
            self.clients.append(c)

    def _connected(self, client, name):
        client.subscribe(self.filter, qos=1)
        self._write({"rt": time.time(), "broker": name, "observer": "connected"})

    def _write(self, obj):
        line = json.dumps(obj, separators=(",", ":"), default=repr)
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()

    def _message(self, name, msg):
        kind = msg.topic.rsplit("/", 1)[-1]
        payload = bytes(msg.payload)
        rec = {"rt": time.time(), "broker": name, "topic": kind, "retain": bool(msg.retain),
               "bytes": contract.publish_bytes(msg.topic, len(payload))}  # fmt: skip
        try:
            if kind in ("data", "alarm", "state"):
                body = contract.decode_batch(payload)
                rec["batch"] = body.get("batch")
                rec["records"] = body["readings"]
            elif payload:
                rec["payload"] = json.loads(payload)
            else:
                rec["payload"] = None  # a retained message cleared
        except (ValueError, KeyError, TypeError):
            rec["undecodable"] = payload[:64].hex()
        self._write(rec)

    def start(self):
        for c in self.clients:
            c.loop_start()
        return self

    def stop(self):
        for c in self.clients:
            c.disconnect()
            c.loop_stop()


class ObserverProcess:
    """The drill's side: this module run as a process (in the noc namespace), and what it has
    written so far counted for the drill's progress line, reading only whole new lines."""

    def __init__(self, path):
        self.path = path
        self.proc = None
        self.pos = 0
        self.counts = {"readings": 0, "alarms": 0}

    def start(self, wrap, prefix, site, brokers, env):
        """wrap(argv) -> argv run in the right namespace; brokers {name: (host, port)}.
        Returns whether the subscriber said it is ready."""
        argv = [sys.executable, "-m", "hil.drill.observer", "--out", self.path, "--prefix",
                prefix, "--site", site]  # fmt: skip
        for name, (host, port) in brokers.items():
            argv += ["--broker", "%s=%s:%d" % (name, host, port)]
        self.proc = subprocess.Popen(
            wrap(argv), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=die_with_parent,
        )  # fmt: skip
        return b"ready" in self.proc.stderr.readline()

    def stop(self):
        stop(self.proc, 10)

    def progress(self):
        """{"readings", "alarms"} received so far."""
        try:
            with open(self.path) as f:
                f.seek(self.pos)
                for line in f:
                    if not line.endswith("\n"):
                        break
                    self.pos += len(line)
                    try:
                        m = json.loads(line)
                    except ValueError:
                        continue
                    if m.get("topic") == "data":
                        self.counts["readings"] += len(m.get("records") or ())
                    elif m.get("topic") == "alarm":
                        self.counts["alarms"] += len(m.get("records") or ())
        except OSError:
            pass
        return self.counts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--prefix", default="site-agent/v1")
    ap.add_argument("--site", required=True)
    ap.add_argument("--broker", action="append", required=True, help="name=host:port")
    a = ap.parse_args(argv)
    brokers = []
    for spec in a.broker:
        name, addr = spec.split("=", 1)
        host, port = addr.rsplit(":", 1)
        brokers.append((name, host, int(port)))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with open(a.out, "a") as out:
        obs = Observer(out, a.prefix, a.site, brokers).start()
        sys.stderr.write("ready\n")
        sys.stderr.flush()
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        obs.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
