# The board's MQTT 3.1.1 packet codec (agent/board/mqtt.py): exact bytes out, and what a broker
# (or an attacker) sends in is parsed or refused with MqttError, never an assertion.
from agent.board import mqtt

from support import raises, run


def test_connect_packet_with_will_user_and_password_is_byte_exact():
    pkt = mqtt.connect_packet("site-1", 60, will=("p/s/status", b"bye", 1, True), username="u",
                              password="pw")  # fmt: skip
    body = (b"\x00\x04MQTT\x04" + bytes((0x02 | 0x04 | 0x08 | 0x20 | 0x80 | 0x40,))
            + b"\x00\x3c" + b"\x00\x06site-1" + b"\x00\x0ap/s/status" + b"\x00\x03bye"
            + b"\x00\x01u" + b"\x00\x02pw")  # fmt: skip
    assert pkt == b"\x10" + bytes((len(body),)) + body


def test_publish_qos1_retained_and_long_remaining_length():
    pkt = mqtt.publish_packet("a/b", b"x" * 200, qos=1, retain=True, pid=0x1234)
    assert pkt[0] == 0x33
    assert pkt[1:3] == bytes((0x80 | (207 & 0x7F), 207 >> 7))  # 2 + 3 + 2 + 200 = 207
    assert pkt[3:8] == b"\x00\x03a/b" and pkt[8:10] == b"\x12\x34" and pkt[10:] == b"x" * 200


def test_publish_head_then_payload_is_the_same_packet():
    head = mqtt.publish_head("a/b", 5, qos=1, retain=False, pid=3)
    assert head + b"hello" == mqtt.publish_packet("a/b", b"hello", 1, False, 3)


def test_subscribe_puback_and_fixed_packets():
    assert mqtt.subscribe_packet(7, [("t/1", 1)]) == b"\x82\x08\x00\x07\x00\x03t/1\x01"
    assert mqtt.puback_packet(0xBEEF) == b"\x40\x02\xbe\xef"
    assert mqtt.PINGREQ_PACKET == b"\xc0\x00" and mqtt.DISCONNECT_PACKET == b"\xe0\x00"


def test_parse_publish_and_its_refusals():
    pkt = mqtt.publish_packet("p/s/cmd", b'{"id":1}', qos=1, pid=9)
    flags, body = pkt[0] & 0x0F, pkt[2:]
    assert mqtt.parse_publish(flags, body) == ("p/s/cmd", b'{"id":1}', 1, 9, False)
    raises(mqtt.MqttError, mqtt.parse_publish, 0x06, body)  # QoS 3 does not exist
    raises(mqtt.MqttError, mqtt.parse_publish, 0x02, b"\x00\x50ab")  # topic past the end
    raises(mqtt.MqttError, mqtt.parse_publish, 0x00, b"\x00\x02\xff\xfe")  # not UTF-8
    raises(mqtt.MqttError, mqtt.parse_connack, b"\x00")
    assert mqtt.parse_connack(b"\x00\x05") == 5


class Stream:
    """A scripted reader/writer pair: read side from `data`, write side collects."""

    def __init__(self, data=b""):
        self.data = data
        self.out = b""

    async def readexactly(self, n):
        if len(self.data) < n:
            raise EOFError
        chunk, self.data = self.data[:n], self.data[n:]
        return chunk

    def write(self, b):
        self.out += b

    async def drain(self):
        pass

    def close(self):
        pass


def _conn(data, max_packet=mqtt.MAX_PACKET):
    s = Stream(data)
    return mqtt.MqttConn(s, s, max_packet), s


def test_reader_returns_packets_and_refuses_what_would_grow_memory():
    c, _ = _conn(b"\x20\x02\x00\x00" + b"\xd0\x00")
    assert run(c.read()) == (mqtt.CONNACK, 0, b"\x00\x00")
    assert run(c.read()) == (mqtt.PINGRESP, 0, b"")
    e = raises(mqtt.MqttError, run, c.read())  # the link is gone
    assert "closed" in str(e)
    c, _ = _conn(b"\x30\xff\xff\xff\x7f")  # a 256 MB PUBLISH announced
    assert "refused" in str(raises(mqtt.MqttError, run, c.read()))
    c, _ = _conn(b"\x30\xff\xff\xff\xff\x01")
    assert "4 bytes" in str(raises(mqtt.MqttError, run, c.read()))
    c, _ = _conn(b"\x00\x00")
    assert "unknown packet type" in str(raises(mqtt.MqttError, run, c.read()))


def test_connect_waits_for_connack_and_reports_its_code():
    c, s = _conn(b"\x20\x02\x00\x04")
    assert run(c.connect("id", 30)) == 4
    assert s.out[:1] == b"\x10"
    c, s = _conn(b"\xd0\x00")
    assert "expected CONNACK" in str(raises(mqtt.MqttError, run, c.connect("id", 30)))


def test_packet_ids_cycle_1_to_65535_never_0():
    c, _ = _conn(b"")
    c._pid = 65534
    assert [c.next_pid() for _ in range(3)] == [65535, 1, 2]
