"""A throwaway PKI for TLS tests, made with the openssl CLI: a CA, a server certificate for the
loopback names (127.0.0.1, ::1, localhost) and a client certificate. Keys are unencrypted files in
the directory given; nothing here is fit for a real deployment."""

import os
import shutil
import subprocess


class PkiError(RuntimeError):
    pass


def _openssl(*args, cwd):
    exe = shutil.which("openssl")
    if exe is None:
        raise PkiError(
            "the openssl CLI is not installed (apt-get install openssl); TLS tests need it"
        )
    r = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise PkiError("openssl %s failed: %s" % (args[0], r.stderr.strip()[-500:]))


def _key(name, d):
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", name + ".key", cwd=d)  # fmt: skip


def make_ca(d, name="ca"):
    """Self-signed CA in d: <name>.pem, <name>.key. Returns the certificate path."""
    os.makedirs(d, exist_ok=True)
    _key(name, d)
    _openssl("req", "-x509", "-new", "-key", name + ".key", "-out", name + ".pem", "-days", "2",
             "-subj", "/CN=site-agent test CA %s" % name, "-addext",
             "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
             cwd=d)  # fmt: skip
    return os.path.join(d, name + ".pem")


def make_cert(d, name, cn, ca="ca", server=False):
    """A certificate signed by CA `ca` in d: <name>.pem, <name>.key. Returns (cert, key)."""
    _key(name, d)
    _openssl("req", "-new", "-key", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn,
             cwd=d)  # fmt: skip
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        if server:
            f.write("subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n")
            f.write("extendedKeyUsage=serverAuth\n")
        else:
            f.write("extendedKeyUsage=clientAuth\n")
    _openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
             "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", ext,
             cwd=d)  # fmt: skip
    return os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")


def make_pki(d, client_cn="site-agent"):
    """CA, server and client certificates in d; returns a dict of their paths."""
    ca = make_ca(d)
    server_cert, server_key = make_cert(d, "server", "localhost", server=True)
    client_cert, client_key = make_cert(d, "client", client_cn)
    return {
        "ca_file": ca,
        "server_cert": server_cert,
        "server_key": server_key,
        "client_cert": client_cert,
        "client_key": client_key,
    }
