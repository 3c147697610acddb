"""A paho-mqtt client set up for one configured broker (host): protocol, TLS, credentials.

The uplink (agent/host/uplink.py) and the console's `uplink test` (agent/host/console_host.py) both
connect with exactly these settings, so a passing `uplink test` means the uplink's own TLS and
login work. TLS is on unless the broker says `insecure = true`: a pinned CA when `ca_file` is set
(then only that CA is trusted, not the system store), TLS 1.2 or newer, and the client
certificate when `cert_file` is set. paho never reconnects on its own: every attempt goes
through the caller's backoff. No secret is ever part of what `where()` returns.
"""

import ssl

import paho.mqtt.client as mqtt


def where(broker):
    """How log lines and the console name a broker: "name (host:port)"."""
    return "%s (%s:%s)" % (broker.get("name") or broker["host"], broker["host"], broker["port"])


def tls_context(broker):
    """The client's TLS context for broker; OSError or ssl.SSLError for unreadable files."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=broker.get("ca_file"))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if broker.get("cert_file"):
        ctx.load_cert_chain(broker["cert_file"], broker.get("key_file"))
    return ctx


def new_client(broker, client_id, connect_timeout=None):
    """A paho client for broker (not connected). Raises OSError, ssl.SSLError or ValueError when
    the TLS files cannot be used."""
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
