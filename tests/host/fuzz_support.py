"""What the fuzz tests share (hypothesis against the BER/SNMP, Megatec and serial parsers): a
tally of the inputs tried, printed at the end of each file; the check that accepted samples carry
registry names with values of the registry's type; and byte-level mutation of a good frame.

    TALLY = Tally()
    TALLY.count("mutated", "rejected")          # one input, what became of it
    check_samples(samples)                      # registry names, registry types
    mutate(frame, edits)                        # edits: [(op index, position, byte)]
    EDITS(max_ops=4)                            # a hypothesis strategy for `edits`
"""

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from agent.core.registry import is_known, lookup

# registry type -> the Python types a value may have: a float metric may be an int (a device
# that reports whole volts); EXACT_TYPES is for parsers that promise floats.
TYPES = {"float": (float, int), "int": (int,), "str": (str,), "bool": (bool,)}
EXACT_TYPES = {"float": (float,), "int": (int,), "str": (str,), "bool": (bool,)}

# mutation ops, by the index an edit names
SET, DELETE, INSERT, NUDGE, TRUNCATE = "set", "delete", "insert", "nudge", "truncate"


def fuzz_settings(max_examples, deadline=None):
    """hypothesis settings for a fuzz test: no example database, no too-slow health check."""
    return settings(
        max_examples=max_examples,
        deadline=deadline,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
    )


class Tally:
    """Inputs tried, by (kind, outcome)."""

    def __init__(self):
        self.counts = {}

    def count(self, kind, outcome):
        key = (kind, outcome)
        self.counts[key] = self.counts.get(key, 0) + 1

    def get(self, kind, outcome):
        return self.counts.get((kind, outcome), 0)

    def total(self):
        return sum(self.counts.values())

    def kinds(self):
        return sorted({k for k, _o in self.counts})

    def summary(self, kind=None):
        """'kind outcome n, ...' (or 'outcome n, ...' of one kind), sorted."""
        rows = sorted(self.counts.items())
        if kind is not None:
            return ", ".join("%s %d" % (o, n) for (k, o), n in rows if k == kind)
        return ", ".join("%s %s %d" % (k, o, n) for (k, o), n in rows)


def check_samples(samples, types=TYPES, units=False, experimental=True):
    """Every sample has a registry name (or experimental.*, when allowed) and a value of the
    registry's type; with `units`, the registry's unit too."""
    for metric, value, unit in samples:
        row = lookup(metric)
        if row is None:
            assert experimental and is_known(metric), metric
            continue
        if units:
            assert unit == row[1], (metric, unit)
        assert isinstance(value, types[row[2]]), (metric, value)


def mutate(data, edits, ops=(SET, DELETE, INSERT, NUDGE)):
    """`data` with `edits` applied in order: each (op, pos, byte) with op an index into `ops`
    and pos taken modulo the length. An empty frame grows by the byte."""
    out = bytearray(data)
    for op, pos, byte in edits:
        if not out:
            out.append(byte)
            continue
        pos %= len(out)
        kind = ops[op % len(ops)]
        if kind == SET:
            out[pos] = byte
        elif kind == DELETE:
            del out[pos]
        elif kind == INSERT:
            out.insert(pos, byte)
        elif kind == NUDGE:  # a length byte +-1: any byte may be a TLV's length
            out[pos] = (out[pos] + (1 if byte & 1 else -1)) & 0xFF
        else:  # TRUNCATE
            del out[pos:]
    return bytes(out)


def EDITS(ops=4, max_pos=1000, max_size=6, byte=None):  # noqa: N802 - reads as a strategy
    """A hypothesis strategy of edits for mutate() over `ops` op kinds."""
    return st.lists(
        st.tuples(
            st.integers(0, ops - 1),
            st.integers(0, max_pos),
            st.integers(0, 255) if byte is None else byte,
        ),
        max_size=max_size,
    )
