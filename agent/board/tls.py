"""TLS settings for a broker on the board (MicroPython's ssl over mbedTLS).

    ctx, server_name = make_context(broker)      # broker: a validated [[uplink.brokers]] table

The image builder (firmware/fit.py) writes certificates as DER: the firmware's mbedTLS is built
without PEM parsing. ca_file may hold several DER certificates back to back (a CA bundle); each
is loaded, so any of them may anchor the broker's chain. The context verifies the broker's
certificate (CERT_REQUIRED; MicroPython's ssl wrapper defaults to CERT_NONE, so this is set
explicitly) and its name against the broker's host. The client key is read from /secrets and is
never logged.
"""


def split_der(data):
    """DER certificates concatenated -> a list of each one's bytes; ValueError when malformed."""
    out = []
    i = 0
    while i < len(data):
        if data[i] != 0x30 or i + 2 > len(data):
            raise ValueError("not a DER certificate at byte %d" % i)
        n = data[i + 1]
        head = 2
        if n & 0x80:
            k = n & 0x7F
            if k < 1 or k > 3 or i + 2 + k > len(data):
                raise ValueError("bad DER length at byte %d" % i)
            n = 0
            for b in data[i + 2 : i + 2 + k]:
                n = (n << 8) | b
            head += k
        end = i + head + n
        if end > len(data):
            raise ValueError("DER certificate truncated at byte %d" % i)
        out.append(data[i:end])
        i = end
    if not out:
        raise ValueError("no certificate")
    return out


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def make_context(broker, read=_read):
    """(ssl context, server name) for a broker table; raises OSError/ValueError naming the file."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ca = broker.get("ca_file")
    if not ca:
        raise ValueError("no ca_file: the board trusts no CA store of its own")
    try:
        certs = split_der(read(ca))
    except ValueError as e:
        raise ValueError("%s: %s" % (ca, e)) from None
    for der in certs:
        ctx.load_verify_locations(cadata=der)
    if broker.get("cert_file"):
        ctx.load_cert_chain(read(broker["cert_file"]), read(broker["key_file"]))
    return ctx, broker["host"]
