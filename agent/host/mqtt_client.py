"""A paho-mqtt client set up for one configured broker (host): protocol, TLS, credentials.

The uplink (agent/host/uplink.py) and the console's `uplink test` (agent/host/console_host.py) both
connect with exactly these settings, so a passing `uplink test` means the uplink's own TLS and
login work. TLS is on unless the broker says `insecure = true`: a pinned CA when `ca_file` is set
(then only that CA is trusted, not the system store), TLS 1.2 or newer, and the client
certificate when `cert_file` is set. paho never reconnects on its own: every attempt goes
through the caller's backoff. No secret is ever part of what `where()` returns.

The uplink drives its client from the asyncio loop (LoopDriver, as paho's docs show for external
loops: add_reader/add_writer on its socket, loop_read/loop_write, loop_misc every second), so the
daemon runs no paho network thread; only the blocking connect (DNS, TCP, TLS handshake) runs in a
thread of its own that ends with it (connect()).
"""

import asyncio
import os
import socket
import ssl
import threading

import paho.mqtt.client as mqtt

from agent.core.errors import os_reason


def where(broker):
    """How log lines and the console name a broker: "name (host:port)"."""
    return "%s (%s:%s)" % (broker.get("name") or broker["host"], broker["host"], broker["port"])


def tls_context(b):
    """The client's TLS context for broker b. Raises ValueError naming the file (and its config
    key) that is missing, or the file and the SSL reason when it cannot be used."""
    for key, what in (("ca_file", "CA file"), ("cert_file", "client certificate"),
                      ("key_file", "client key")):  # fmt: skip
        path = b.get(key)
        if path and not os.path.isfile(path):
            raise ValueError("%s %s not found (uplink.brokers %s)" % (what, path, key))
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=b.get("ca_file"))
    except (OSError, ssl.SSLError) as e:
        raise ValueError("CA file %s unusable: %s" % (b.get("ca_file"), _ssl_text(e))) from e
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if b.get("cert_file"):
        try:
            ctx.load_cert_chain(b["cert_file"], b.get("key_file"))
        except (OSError, ssl.SSLError) as e:
            what = "client certificate %s / key %s" % (b["cert_file"], b.get("key_file"))
            raise ValueError("%s unusable: %s" % (what, _ssl_text(e))) from e
    return ctx


def _ssl_text(e):
    return getattr(e, "reason", None) or getattr(e, "strerror", None) or str(e)


def connect_reason(b, e, timeout):
    """Why a connection to broker b failed, in words (DNS, TLS, refused, timeout)."""
    if isinstance(e, socket.gaierror):
        return "cannot resolve the host name %s (DNS: %s)" % (b["host"], e.strerror or e)
    if isinstance(e, ssl.SSLCertVerificationError):
        trusted = b.get("ca_file") or "the system CAs"
        why = e.verify_message or e.reason
        return (
            "TLS: the broker's certificate is not trusted by %s (certificate verify failed: "
            "%s)" % (trusted, why)
        )
    if isinstance(e, ssl.SSLError):
        return "TLS handshake failed (%s)" % _ssl_text(e)
    if isinstance(e, ConnectionRefusedError):
        return "connection refused: nothing listens on %s:%s" % (b["host"], b["port"])
    if isinstance(e, (TimeoutError, socket.timeout)):
        return "no answer from %s:%s within %gs" % (b["host"], b["port"], timeout)
    if isinstance(e, OSError):
        return os_reason(e)
    return str(e)


def new_client(broker, client_id, connect_timeout=None):
    """A paho client for broker (not connected). Raises ValueError naming a TLS file that is
    missing or cannot be used."""
    proto = mqtt.MQTTv5 if broker.get("protocol") == "5" else mqtt.MQTTv311
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=proto
    )
    if not broker.get("insecure"):
        client.tls_set_context(tls_context(broker))
    if broker.get("username"):
        client.username_pw_set(broker["username"], broker.get("password"))
    if connect_timeout is not None:
        client.connect_timeout = connect_timeout
    client.reconnect_delay_set(3600, 3600)
    return client


def connect(client, host, port, keepalive):
    """client.connect(...) in a thread of its own that ends with it (the default executor's
    threads would stay for the daemon's life); awaitable, raises what connect raises."""
    aloop = asyncio.get_running_loop()
    fut = aloop.create_future()

    def settle(error):
        if not fut.done():
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(None)

    def run():
        error = None
        try:
            client.connect(host, port, keepalive)
        except Exception as e:
            error = e
        try:
            aloop.call_soon_threadsafe(settle, error)
        except RuntimeError:  # the asyncio loop is closed: shutting down
            pass

    threading.Thread(target=run, name="mqtt-connect", daemon=True).start()
    return fut


class LoopDriver:
    """A connected paho client run by the asyncio loop `aloop`; from start() on, paho (and every
    callback it makes) runs only in the loop's thread. One per connection."""

    def __init__(self, client, aloop):
        self.client = client
        self.aloop = aloop
        self.sock = None  # the socket the loop watches; None once paho closed it
        self.misc = None  # the task calling loop_misc

    def start(self):
        """Watch the socket, write what paho queued (its CONNECT), keep the keepalive. False
        when the client has no socket (the link closed during the connect)."""
        c = self.client
        sock = c.socket()
        if sock is None:
            return False
        self.sock = sock
        c.on_socket_register_write = lambda _c, _u, k: self.aloop.add_writer(k, self._writable)
        c.on_socket_unregister_write = lambda _c, _u, k: self.aloop.remove_writer(k)
        c.on_socket_close = lambda _c, _u, _k: self.detach()
        self.aloop.add_reader(sock, self._readable)
        if c.want_write():
            self.aloop.add_writer(sock, self._writable)
        self.misc = asyncio.ensure_future(self._misc())
        return True

    def _readable(self):
        c = self.client
        c.loop_read()
        # TLS: records already decrypted wait in the SSL object, not on the socket.
        pending = getattr(self.sock, "pending", None)
        while pending is not None and self.sock is not None and c.socket() is self.sock \
                and pending() > 0:  # fmt: skip
            c.loop_read()

    def _writable(self):
        self.client.loop_write()
        # paho unregisters only a writer it registered itself; the CONNECT's is ours.
        if self.sock is not None and not self.client.want_write():
            self.aloop.remove_writer(self.sock)

    async def _misc(self):
        while self.client.socket() is not None:
            self.client.loop_misc()  # PINGREQ on time; a missing PINGRESP closes the link
            await asyncio.sleep(1.0)

    def detach(self):
        """Stop watching the socket (paho is closing it, or the connection ends)."""
        sock, self.sock = self.sock, None
        if sock is not None:
            self.aloop.remove_reader(sock)
            self.aloop.remove_writer(sock)

    async def close(self, grace=1.0):
        """DISCONNECT (written within `grace` s if the link takes it), then the socket closed."""
        try:
            self.client.disconnect()  # queued; paho closes the socket once it is written
        except Exception:  # already gone
            pass
        end = asyncio.get_running_loop().time() + grace
        while (self.sock is not None and self.client.want_write()
               and asyncio.get_running_loop().time() < end):  # fmt: skip
            await asyncio.sleep(0.02)
        sock = self.sock
        self.detach()
        if sock is not None:
            sock.close()  # DISCONNECT unsent: paho never closed it; the client is dropped
        if self.misc is not None:
            self.misc.cancel()
