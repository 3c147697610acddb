"""An MQTT broker on loopback for tests and the demo.

mosquitto (Debian's package) when it is installed; otherwise amqtt, a pure-Python broker from PyPI,
started in this process (hil/pybroker.py). SITE_AGENT_BROKER=amqtt (or =mosquitto) forces the
choice, so the fallback is tested on machines that have mosquitto. Tests that need mosquitto
specifically (TLS, ACLs) ask for it with `require_mosquitto=True` and fail with a clear message
when it is missing.

mosquitto options for the uplink tests: `tls` (dict: ca_file, cert_file, key_file, and
require_certificate, default True: mutual TLS), `acl` (the text of an ACL file), `passwords`
({user: password}, hashed with mosquitto_passwd; anonymous access is then refused) and
`persistence` (sessions and queued messages survive halt()/restart()). halt() stops the broker
and keeps its files and port; restart() starts it again on the same port. `netns` runs mosquitto
inside a network namespace a rig made (hil/netns.py), listening on `host` there.
"""

import os
import shutil
import signal
import subprocess
import tempfile

from hil import netns as ns
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

    def __init__(self, host="127.0.0.1", port=None, require_mosquitto=False, extra_conf="",
                 tls=None, acl=None, passwords=None, persistence=False, netns=None):  # fmt: skip
        self.host = host
        self.netns = netns
        self.port = port
        self.extra_conf = extra_conf
        self.tls = tls
        self.acl = acl
        self.passwords = passwords
        self.persistence = persistence
        self.require_mosquitto = require_mosquitto or bool(
            tls or acl or passwords or persistence or netns
        )
        self.exe = None
        self.proc = None
        self.inproc = None
        self.kind = None
        self.dir = None

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="site-agent-broker-")
        if self.port is None:
            self.port = 1883 if self.netns else free_port(self.host)
        want = os.environ.get("SITE_AGENT_BROKER", "")
        exe = find_mosquitto() if want != "amqtt" else None
        if exe:
            self._start_mosquitto(exe)
        elif self.require_mosquitto or want == "mosquitto":
            raise BrokerUnavailable(
                "mosquitto is not installed (apt-get install mosquitto); this test needs it"
            )
        else:
            self._start_amqtt()
        try:
            self._wait(15)
        except RuntimeError as e:
            log = self.log_text()
            self.stop()
            raise BrokerUnavailable("%s broker did not start: %s\n%s" % (self.kind, e, log)) from e
        return self

    def _start_mosquitto(self, exe):
        self.kind = "mosquitto"
        self.exe = exe
        conf = os.path.join(self.dir, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write("listener %d %s\n" % (self.port, self.host))
            if hasattr(os, "geteuid") and os.geteuid() == 0:
                f.write("user root\n")  # keep access to our private temp dir
            if self.tls:
                t = self.tls
                f.write("cafile %s\ncertfile %s\nkeyfile %s\n"
                        % (t["ca_file"], t["cert_file"], t["key_file"]))  # fmt: skip
                f.write("require_certificate %s\n"
                        % ("true" if t.get("require_certificate", True) else "false"))
                f.write("tls_version tlsv1.2\n")
            if self.passwords:
                pw = os.path.join(self.dir, "passwd")
                open(pw, "w").close()
                for user, password in self.passwords.items():
                    subprocess.run(["mosquitto_passwd", "-b", pw, user, password], check=True,
                                   capture_output=True)  # fmt: skip
                f.write("allow_anonymous false\npassword_file %s\n" % pw)
            else:
                f.write("allow_anonymous true\n")
            if self.acl is not None:
                acl = os.path.join(self.dir, "acl")
                with open(acl, "w") as a:
                    a.write(self.acl)
                f.write("acl_file %s\n" % acl)
            if self.persistence:
                f.write("persistence true\npersistence_location %s/\n" % self.dir)
            else:
                f.write("persistence false\n")
            f.write("log_dest file %s\n" % os.path.join(self.dir, "broker.log"))
            f.write("log_type error\nlog_type warning\nlog_type notice\n")
            f.write(self.extra_conf)
        self._spawn_mosquitto()

    def _spawn_mosquitto(self):
        conf = os.path.join(self.dir, "mosquitto.conf")
        self.proc = subprocess.Popen(
            ns.exec_argv(self.netns, [self.exe, "-c", conf]),
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.dir, "stderr.log"), "w"),
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    def _start_amqtt(self):
        from hil.pybroker import InProcessBroker

        self.kind = "amqtt"
        try:
            self.inproc = InProcessBroker(self.host, self.port).start()
        except RuntimeError as e:
            raise BrokerUnavailable(
                "no MQTT broker: mosquitto is not installed (apt-get install mosquitto) and %s" % e
            ) from e

    def log_text(self):
        out = []
        for name in ("broker.log", "stderr.log"):
            p = os.path.join(self.dir or "", name)
            if self.dir and os.path.exists(p):
                with open(p, errors="replace") as f:
                    out.append(f.read()[-4000:])
        return "\n".join(out)

    def _wait(self, timeout):
        ns.call_in(self.netns, wait_tcp, self.host, self.port, timeout, self.proc)

    def halt(self):
        """Stop the broker (SIGTERM: a persistent one saves its state) but keep its files."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self):
        """Start a halted mosquitto again with the same config and port."""
        if self.kind != "mosquitto":
            raise BrokerUnavailable("restart() needs mosquitto")
        self._spawn_mosquitto()
        try:
            self._wait(15)
        except RuntimeError as e:
            why = "mosquitto did not restart: %s\n%s" % (e, self.log_text())
            raise BrokerUnavailable(why) from e
        return self

    def stop(self):
        if self.inproc is not None:
            self.inproc.stop()
            self.inproc = None
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
