"""amqtt, a pure-Python MQTT broker from PyPI, run inside this process on a thread of its own.

The fallback when mosquitto is not installed: `site-agent demo` still works with nothing but
Python packages. It serves plain MQTT on loopback with anonymous access, which is all the demo
needs; TLS, ACL and persistence tests ask for mosquitto instead.
"""

import asyncio
import logging
import threading


class InProcessBroker:
    def __init__(self, host, port):
        self.host = host
        self.port = port
        self._loop = None
        self._thread = None
        self._broker = None
        self._error = None

    def start(self, timeout=15):
        try:
            from amqtt.broker import Broker
        except ImportError as e:
            raise RuntimeError(
                "amqtt is not installed (pip install 'site-agent[sim]'): %s" % e
            ) from e
        # amqtt logs every connection at INFO; the demo's screen is for the site's readings.
        logging.getLogger("amqtt").setLevel(logging.WARNING)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": "%s:%d" % (self.host, self.port)}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run():
            asyncio.set_event_loop(self._loop)
            try:
                self._broker = Broker(config, loop=self._loop)
                self._loop.run_until_complete(self._broker.start())
            except Exception as e:  # reported by start() in the caller's thread
                self._error = e
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="amqtt-broker", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("amqtt did not start within %gs" % timeout)
        if self._error is not None:
            raise RuntimeError("amqtt did not start: %s" % self._error)
        return self

    def stop(self, timeout=10):
        if self._thread is None:
            return
        if self._broker is not None and self._loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            try:
                fut.result(timeout)
            except Exception:
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        if not self._loop.is_running():
            self._loop.close()
        self._thread = None
