"""Checksummed record frames for the durable store (portable: struct, binascii, json only).

A frame is a 16-byte header and a payload:

    off 0  u8   magic 0xA7
    off 1  u8   kind (REC, AGG, SEAL, META, SNAP)
    off 2  u16  payload length (little-endian)
    off 4  u64  seq (the record's sequence number; for SEAL the segment's last seq)
    off 12 u32  CRC-32 over bytes 0..11 of the header and the payload

Invariant: a frame is either whole and its CRC matches, or `read_frame`/`scan` rejects it and
everything after it in that file. A torn tail (a crash in the middle of a write) therefore loses
only data that was never confirmed by a sync. Payloads of REC and AGG frames are compact JSON of
the record dict; JSON keeps the format readable by hand and by both runtimes' C-coded json.
"""

import binascii
import json
import struct

from agent.core.errors import QueueError

MAGIC = 0xA7
REC = 1  # one record (a reading or an alarm event)
AGG = 2  # an aggregate written by thinning (min, max, mean, count over a window)
SEAL = 3  # last frame of a full segment: count, first and last seq, flags
META = 4  # the store's small state file (cursors, counters, seq floor)
SNAP = 5  # snapshot of the latest record per (device, metric)

HEADER = 16
_HFMT = "<BBHQI"
_SEAL_FMT = "<IQQB"
SEAL_PAYLOAD = 21
SEAL_FRAME = HEADER + SEAL_PAYLOAD
MAX_PAYLOAD = 65535

FLAG_THINNED = 1


def _crc(head12, payload):
    return binascii.crc32(payload, binascii.crc32(head12)) & 0xFFFFFFFF


def frame(kind, seq, payload):
    """Encode one frame. payload: bytes."""
    n = len(payload)
    if n > MAX_PAYLOAD:
        raise QueueError("record too large: %d bytes (max %d)" % (n, MAX_PAYLOAD))
    head12 = struct.pack("<BBHQ", MAGIC, kind, n, seq)
    return head12 + struct.pack("<I", _crc(head12, payload)) + payload


def dumps(record):
    """A record dict as compact JSON bytes."""
    return json.dumps(record, separators=(",", ":")).encode()


def loads(payload):
    try:
        return json.loads(payload)
    except ValueError as e:
        raise QueueError("undecodable record payload: %s" % (e,)) from e


def encode_record(record, kind=REC):
    return frame(kind, record["seq"], dumps(record))


def parse_header(buf, off=0):
    """(kind, length, seq, crc) of the header at buf[off:off+16], or None if the magic is wrong."""
    magic, kind, n, seq, crc = struct.unpack_from(_HFMT, buf, off)
    if magic != MAGIC or kind < REC or kind > SNAP:
        return None
    return kind, n, seq, crc


def check(buf, off, n, crc):
    """True if the frame at buf[off:] with payload length n carries a matching CRC."""
    mv = memoryview(buf)
    return _crc(mv[off : off + 12], mv[off + HEADER : off + HEADER + n]) == crc


def scan(buf, verify=True):
    """Walk whole frames in buf from offset 0. Yields (offset, kind, seq, length) for each valid
    frame and stops at the first frame that is short, has a bad magic or a bad CRC. The caller
    learns where the valid prefix ends from the last yielded offset + HEADER + length."""
    off = 0
    end = len(buf)
    while off + HEADER <= end:
        h = parse_header(buf, off)
        if h is None:
            return
        kind, n, seq, crc = h
        if off + HEADER + n > end:
            return
        if verify and not check(buf, off, n, crc):
            return
        yield off, kind, seq, n
        off += HEADER + n


def seal_frame(count, first, last, flags=0):
    return frame(SEAL, last, struct.pack(_SEAL_FMT, count, first, last, flags))


def parse_seal(buf):
    """(count, first, last, flags) if buf (the last SEAL_FRAME bytes of a file) is a valid SEAL
    frame, else None."""
    if len(buf) != SEAL_FRAME:
        return None
    h = parse_header(buf, 0)
    if h is None or h[0] != SEAL or h[1] != SEAL_PAYLOAD or not check(buf, 0, h[1], h[3]):
        return None
    return struct.unpack_from(_SEAL_FMT, buf, HEADER)


def read_one(buf, kind):
    """Decode a file holding exactly one frame of `kind` (META, SNAP); None if invalid."""
    if len(buf) < HEADER:
        return None
    h = parse_header(buf, 0)
    if h is None or h[0] != kind or HEADER + h[1] != len(buf) or not check(buf, 0, h[1], h[3]):
        return None
    try:
        return json.loads(bytes(memoryview(buf)[HEADER:]))
    except ValueError:
        return None
