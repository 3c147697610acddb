"""PIN hashing, lockout and the one-session lock (portable)."""

import binascii

from agent.core.config.tables import pin_hash_ok
from agent.core.console import auth
from agent.core.errors import ConfigError

from support import raises, run


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def hx(b):
    return binascii.hexlify(b).decode()


# RFC 7914 section 11 (PBKDF2-HMAC-SHA256 test vector), and one with a key longer than a block.
RFC7914 = (
    "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
    "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"
)


def test_pbkdf2_matches_the_rfc_vector_in_pure_python():
    assert hx(auth.pbkdf2_sha256(b"passwd", b"salt", 1, 64, pure=True)) == RFC7914


def test_pure_python_agrees_with_the_fast_path_for_many_shapes():
    for pw, salt, n, dk in (
        (b"4711", b"\x00" * 16, 3, 32),
        (b"x" * 100, b"salty", 7, 32),  # key longer than the 64-byte block is hashed first
        (b"", b"s", 1, 20),
        (b"pass phrase", b"0123456789abcdef", 501, 40),  # crosses a YIELD_EVERY boundary
    ):
        pure = auth.pbkdf2_sha256(pw, salt, n, dk, pure=True)
        assert len(pure) == dk
        assert pure == auth.pbkdf2_sha256(pw, salt, n, dk)


def test_async_verify_yields_and_agrees():
    h = auth.make_hash("2468", iterations=1200, salt=b"abcdefgh")
    assert run(auth.verify_async("2468", h))
    assert not run(auth.verify_async("2469", h))


def test_hash_format_round_trips_and_config_accepts_it():
    h = auth.make_hash("1234", iterations=10)
    assert pin_hash_ok(h)
    parts = h.split("$")
    assert parts[0] == "pbkdf2-sha256" and parts[1] == "10" and len(parts[2]) == 32
    assert len(parts[3]) == 64
    assert auth.verify("1234", h) and not auth.verify("12345", h)
    assert auth.make_hash("1234", 10) != h  # a fresh salt each time


def test_bad_pins_and_hashes_are_config_errors_that_hide_the_value():
    raises(ConfigError, auth.make_hash, "123")
    raises(ConfigError, auth.make_hash, "12\x0734")
    raises(ConfigError, auth.make_hash, "1234", 0)
    secret = "pbkdf2-sha256$10$zz$0011"
    for bad in (secret, "md5$1$00$00", "pbkdf2-sha256$x$00$00", "pbkdf2-sha256$99999999$00$" +
                "00" * 32, "pbkdf2-sha256$10$$" + "00" * 32, 42):  # fmt: skip
        e = raises(ConfigError, auth.parse_hash, bad)
        assert "zz" not in str(e)
    raises(ConfigError, auth.Access, secret)


def test_guard_grows_delays_after_free_attempts_and_resets_on_success():
    c = Clock()
    g = auth.Guard(free=3, base=2.0, cap=30.0, clock=c)
    assert [g.failed() for _ in range(3)] == [0.0, 0.0, 2.0]
    assert g.wait() == 2.0
    c.t += 2.0
    assert g.wait() == 0.0
    assert g.failed() == 4.0
    assert g.failed() == 8.0
    assert g.failed() == 16.0
    assert g.failed() == 30.0  # capped
    for _ in range(100):
        g.failed()
    assert g.wait() == 30.0
    g.succeeded()
    assert g.wait() == 0.0 and g.failures == 0
    assert g.failed() == 0.0


def test_session_lock_admits_one_owner():
    lock = auth.SessionLock()
    a, b = object(), object()
    assert lock.acquire(a) and lock.acquire(a)
    assert not lock.acquire(b)
    lock.release(b)  # not the holder: no effect
    assert lock.holder is a
    lock.release(a)
    assert lock.acquire(b)
