"""A paho-mqtt client set up for one configured broker (host): protocol, TLS, credentials.

The uplink (agent/host/uplink.py) and the console's `uplink test` (agent/host/console_host.py) both
connect with exactly these settings, so a passing `uplink test` means the uplink's own TLS and
login work. TLS is on unless the broker says `insecure = true`: a pinned CA when `ca_file` is set
(then only that CA is trusted, not the system store), TLS 1.2 or newer, and the client
certificate when `cert_file` is set. paho never reconnects on its own: every attempt goes
through the caller's backoff. No secret is ever part of what `where()` returns.
"""

import os
import socket
import ssl

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
