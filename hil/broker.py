"""An MQTT broker on loopback for tests and the demo.

mosquitto (Debian's package) when it is installed; otherwise amqtt, a pure-Python broker from PyPI,
in a subprocess. Tests that need mosquitto specifically (TLS, ACLs) ask for it with
`require_mosquitto=True` and fail with a clear message when it is missing.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile

from hil.net import free_port, wait_tcp
from hil.proc import die_with_parent


class BrokerUnavailable(RuntimeError):
    pass


def find_mosquitto():
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )


class Broker:
    """`with Broker() as b:` gives b.host and b.port; the broker and its files go on exit."""

    def __init__(self, host="127.0.0.1", port=None, require_mosquitto=False, extra_conf=""):
        self.host = host
        self.port = port
        self.require_mosquitto = require_mosquitto
        self.extra_conf = extra_conf
        self.proc = None
        self.kind = None
        self.dir = None

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="site-agent-broker-")
        if self.port is None:
            self.port = free_port(self.host)
        exe = find_mosquitto()
        if exe:
            self._start_mosquitto(exe)
        elif self.require_mosquitto:
            raise BrokerUnavailable(
                "mosquitto is not installed (apt-get install mosquitto); this test needs it"
            )
        else:
            self._start_amqtt()
        try:
            wait_tcp(self.host, self.port, 15, self.proc)
        except RuntimeError as e:
            log = self.log_text()
            self.stop()
            raise BrokerUnavailable("%s broker did not start: %s\n%s" % (self.kind, e, log))
        return self

    def _start_mosquitto(self, exe):
        self.kind = "mosquitto"
        conf = os.path.join(self.dir, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write("listener %d %s\n" % (self.port, self.host))
            f.write("allow_anonymous true\npersistence false\n")
            f.write("log_dest file %s\n" % os.path.join(self.dir, "broker.log"))
            f.write("log_type error\nlog_type warning\nlog_type notice\n")
            f.write(self.extra_conf)
        self.proc = subprocess.Popen(
            [exe, "-c", conf],
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.dir, "stderr.log"), "w"),
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    def _start_amqtt(self):
        self.kind = "amqtt"
        conf = os.path.join(self.dir, "amqtt.yaml")
        with open(conf, "w") as f:
            f.write(
                "listeners:\n  default:\n    type: tcp\n    bind: %s:%d\n"
                "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
                "    allow_anonymous: true\n" % (self.host, self.port)
            )
        exe = os.path.join(os.path.dirname(sys.executable), "amqtt")
        if not os.path.exists(exe):
            raise BrokerUnavailable(
                "no MQTT broker: install mosquitto (apt-get install mosquitto) or amqtt "
                "(pip install 'site-agent[sim]')"
            )
        self.proc = subprocess.Popen(
            [exe, "-c", conf],
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.dir, "stderr.log"), "w"),
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    def log_text(self):
        out = []
        for name in ("broker.log", "stderr.log"):
            p = os.path.join(self.dir or "", name)
            if self.dir and os.path.exists(p):
                with open(p, errors="replace") as f:
                    out.append(f.read()[-4000:])
        return "\n".join(out)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
