"""Drive Debian's headless Chromium through chromedriver (W3C WebDriver over HTTP, standard
library only): open a page, run a script in it, read what it shows, take a screenshot.

    with Browser() as b:
        b.get("http://127.0.0.1:8080/")
        rows = b.js("return document.querySelectorAll('tr').length")
        b.screenshot("page.png")

Needs the Debian packages chromium and chromium-driver (./run setup installs them); raises
BrowserUnavailable naming what is missing. Each Browser has a fresh profile in a temp dir, which
goes on close; the chromedriver process (and the browser it started) is stopped on close.
"""

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from hil.net import free_port, wait_tcp
from hil.proc import die_with_parent

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Flags that work in a container with no GPU, no sandbox and no network beyond loopback.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--lang=en-US"]  # fmt: skip


class BrowserUnavailable(RuntimeError):
    pass


class WebDriverError(RuntimeError):
    pass


class Browser:
    def __init__(self, width=1500, height=1000):
        self.width = width
        self.height = height
        self.proc = None
        self.profile = None
        self.session = None
        self.base = None

    def start(self):
        for path, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
            if not os.path.exists(path):
                raise BrowserUnavailable("%s is missing (apt-get install %s; ./run setup does it)"
                                         % (path, pkg))  # fmt: skip
        port = free_port()
        self.profile = tempfile.mkdtemp(prefix="site-agent-chromium-")
        self.proc = subprocess.Popen(
            [CHROMEDRIVER, "--port=%d" % port, "--allowed-ips=127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=die_with_parent)  # fmt: skip
        try:
            wait_tcp("127.0.0.1", port, 20, self.proc)
            self.base = "http://127.0.0.1:%d" % port
            caps = {"browserName": "chrome", "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": FLAGS + ["--user-data-dir=%s" % self.profile,
                                 "--window-size=%d,%d" % (self.width, self.height)]},
                "goog:loggingPrefs": {"browser": "ALL"}}  # fmt: skip
            out = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}}, 90)
            self.session = out["sessionId"]
        except BaseException:
            self.close()
            raise
        return self

    def _call(self, method, path, body=None, timeout=60):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                out = json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            try:
                detail = json.loads(e.read()).get("value", {})
            except ValueError:
                detail = {}
            why = "%s: %s" % (detail.get("error", e.code), str(detail.get("message", ""))[:500])
            raise WebDriverError("%s %s: %s" % (method, path, why)) from None
        return out.get("value", out)

    def _s(self, path):
        return "/session/%s%s" % (self.session, path)

    def get(self, url):
        self._call("POST", self._s("/url"), {"url": url})

    def js(self, script, *args):
        """Run `script` (a function body; `arguments` holds args) in the page; its result."""
        return self._call("POST", self._s("/execute/sync"), {"script": script, "args": list(args)})

    def wait_for(self, script, timeout=30.0, *args):
        """Run script until it returns something truthy; that value (TimeoutError if never)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.js(script, *args)
            except WebDriverError as e:
                last = e
            if last and not isinstance(last, WebDriverError):
                return last
            time.sleep(0.2)
        raise TimeoutError("page never satisfied: %s (last: %r)" % (script[:200], last))

    def screenshot(self, path):
        png = base64.b64decode(self._call("GET", self._s("/screenshot")))
        with open(path, "wb") as f:
            f.write(png)
        return path

    def console(self):
        """Browser console entries since the last call: [{"level", "message"}, ...]."""
        try:
            return self._call("POST", self._s("/se/log"), {"type": "browser"})
        except WebDriverError:
            return []

    def close(self):
        if self.session and self.base:
            try:
                self._call("DELETE", self._s(""), timeout=20)
            except Exception:
                pass
        self.session = None
        if self.proc is not None:
            # chromedriver leads its own process group, the browser in it: stop them all.
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except OSError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                self.proc.wait()
        self.proc = None
        if self.profile:
            shutil.rmtree(self.profile, ignore_errors=True)
            self.profile = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
