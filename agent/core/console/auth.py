"""Technician PIN check for the console (portable): hashing, lockout, one session at a time.

    h = make_hash("4711")             # "pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>"
    ok = await verify_async("4711", h)          # yields to the loop while hashing
    guard = Guard(); guard.wait()               # seconds before another attempt is allowed
    lock = SessionLock(); lock.acquire("serial")

PBKDF2-HMAC-SHA256 (RFC 8018) is written out over hashlib.sha256, because MicroPython has neither
hashlib.pbkdf2_hmac nor hmac. On CPython the stdlib's pbkdf2_hmac is used when present: the same
function, a hundred times faster; tests check the two agree. Trade-off of the iteration count: a
PIN is a small secret, so the hash only slows an attacker who has read the config; the online
guard is the lockout. DEFAULT_ITERATIONS costs a few milliseconds on a Pi and roughly seconds on
an ESP32, where verify_async hands the loop back every YIELD_EVERY rounds so polling goes on.
"""

import binascii
import hashlib
import os
import struct

from agent.core.compat import monotonic
from agent.core.errors import ConfigError

PREFIX = "pbkdf2-sha256"
DEFAULT_ITERATIONS = 20000
MAX_ITERATIONS = 2000000  # a config cannot make a login take minutes
SALT_BYTES = 16
MIN_PIN = 4
MAX_PIN = 64
YIELD_EVERY = 500

_pbkdf2_hmac = getattr(hashlib, "pbkdf2_hmac", None)


def _pads(key):
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key + bytes(64 - len(key))
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def _steps(password, salt, iterations, dklen):
    """Generator doing PBKDF2-HMAC-SHA256; yields None every YIELD_EVERY rounds, then the key."""
    ipad, opad = _pads(password)
    sha = hashlib.sha256
    out = b""
    block = 1
    while len(out) < dklen:
        u = sha(opad + sha(ipad + salt + struct.pack(">I", block)).digest()).digest()
        acc = int.from_bytes(u, "big")
        for i in range(1, iterations):
            u = sha(opad + sha(ipad + u).digest()).digest()
            acc ^= int.from_bytes(u, "big")
            if i % YIELD_EVERY == 0:
                yield None
        out += acc.to_bytes(32, "big")
        block += 1
    yield out[:dklen]


def pbkdf2_sha256(password, salt, iterations, dklen=32, pure=False):
    """The derived key (bytes). `pure` forces the portable code on CPython (for tests)."""
    if _pbkdf2_hmac is not None and not pure:
        return _pbkdf2_hmac("sha256", password, salt, iterations, dklen)
    for key in _steps(password, salt, iterations, dklen):
        if key is not None:
            return key


async def pbkdf2_sha256_async(password, salt, iterations, dklen=32):
    if _pbkdf2_hmac is not None:
        return _pbkdf2_hmac("sha256", password, salt, iterations, dklen)
    import asyncio

    for key in _steps(password, salt, iterations, dklen):
        if key is not None:
            return key
        await asyncio.sleep(0)


def _salt(n):
    # A salt must be unique, not secret: where os.urandom is missing (some MicroPython ports)
    # the random module will do. Hashes are normally made on the host (site-agent console).
    urandom = getattr(os, "urandom", None)
    if urandom is not None:
        return urandom(n)
    import random

    return bytes(random.getrandbits(8) for _ in range(n))


def check_pin(pin):
    """Raise ConfigError unless pin is MIN_PIN..MAX_PIN printable ASCII characters (what the
    console's line discipline can deliver)."""
    if not isinstance(pin, str) or not (MIN_PIN <= len(pin) <= MAX_PIN):
        raise ConfigError("PIN: expected %d to %d characters" % (MIN_PIN, MAX_PIN))
    for ch in pin:
        if not (" " <= ch <= "~"):
            raise ConfigError("PIN: expected printable ASCII characters only")


def make_hash(pin, iterations=DEFAULT_ITERATIONS, salt=None):
    """The config's pin_hash for pin: "pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>"."""
    check_pin(pin)
    if not (1 <= iterations <= MAX_ITERATIONS):
        raise ConfigError("iterations: expected 1 to %d" % MAX_ITERATIONS)
    salt = _salt(SALT_BYTES) if salt is None else salt
    key = pbkdf2_sha256(pin.encode(), salt, iterations)
    return "%s$%d$%s$%s" % (
        PREFIX,
        iterations,
        binascii.hexlify(salt).decode(),
        binascii.hexlify(key).decode(),
    )


def parse_hash(text):
    """(iterations, salt, key) from a pin_hash; ConfigError (never showing the value) if bad."""
    bad = ConfigError("console.pin_hash: expected %s$<iterations>$<salt hex>$<hash hex>" % PREFIX)
    if not isinstance(text, str):
        raise bad
    parts = text.split("$")
    if len(parts) != 4 or parts[0] != PREFIX or not parts[1].isdigit():
        raise bad
    n = int(parts[1])
    if not (1 <= n <= MAX_ITERATIONS):
        raise bad
    try:
        salt = binascii.unhexlify(parts[2])
        key = binascii.unhexlify(parts[3])
    except (ValueError, TypeError):
        raise bad from None
    if not salt or len(key) < 16:
        raise bad
    return n, salt, key


def _same(a, b):
    # Constant time in the content: every byte is compared whatever the first difference.
    if len(a) != len(b):
        return False
    diff = 0
    for x, y in zip(a, b):
        diff |= x ^ y
    return diff == 0


def verify(pin, pin_hash):
    n, salt, key = parse_hash(pin_hash)
    return _same(pbkdf2_sha256(pin.encode(), salt, n, len(key)), key)


async def verify_async(pin, pin_hash):
    n, salt, key = parse_hash(pin_hash)
    got = await pbkdf2_sha256_async(pin.encode(), salt, n, len(key))
    return _same(got, key)


class Guard:
    """Lockout after failed logins, shared by every console transport of the agent (a new
    connection does not reset it). The first `free` failures cost nothing; failure number
    free + k locks logins for base * 2**k seconds, capped at `cap`. Only a success resets it."""

    def __init__(self, free=3, base=2.0, cap=300.0, clock=monotonic):
        self.free = free
        self.base = base
        self.cap = cap
        self.clock = clock
        self.failures = 0
        self.until = None

    def wait(self):
        """Seconds before another attempt is allowed (0 when it is allowed now)."""
        if self.until is None:
            return 0.0
        left = self.until - self.clock()
        return left if left > 0 else 0.0

    def failed(self):
        """Count a wrong PIN; returns the lockout it starts in seconds (0 for none)."""
        self.failures += 1
        k = self.failures - self.free
        if k < 0:
            return 0.0
        delay = self.base * (2**k) if k < 30 else self.cap
        delay = self.cap if delay > self.cap else delay
        self.until = self.clock() + delay
        return delay

    def succeeded(self):
        self.failures = 0
        self.until = None


class SessionLock:
    """At most one logged-in console session in the whole agent. Owners are any objects."""

    def __init__(self):
        self.holder = None

    def acquire(self, owner):
        if self.holder is not None and self.holder is not owner:
            return False
        self.holder = owner
        return True

    def release(self, owner):
        if self.holder is owner:
            self.holder = None


class Access:
    """The console's access rules, one per agent and shared by its transports: the PIN hash
    (None: nobody can log in), the lockout guard, the one-session lock and the idle timeout."""

    def __init__(self, pin_hash, idle_timeout=120.0, guard=None, lock=None, clock=monotonic):
        if pin_hash is not None:
            parse_hash(pin_hash)  # a bad hash is a config error at start, not at first login
        self.pin_hash = pin_hash
        self.idle_timeout = float(idle_timeout)
        self.clock = clock
        self.guard = guard if guard is not None else Guard(clock=clock)
        self.lock = lock if lock is not None else SessionLock()
