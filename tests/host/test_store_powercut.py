"""Power cut at every write: the store on littlefs (littlefs-python, emulated block device).

For cut = 1, 2, 3, ... up to the workload's last write, in an atomic mode and in an out-of-order
write-back mode, run the workload until the device dies, then mount the medium as it is and open
the store without help. Every record confirmed before the cut must be present exactly once and
intact, nothing partial comes back, and the sequence continues without reuse."""

import copy

from agent.core.store.queue import LANE_ALARM, LANE_ROUTINE
from agent.core.store.store import Store

from store_support import CutDevice, LfsFs, mount_image, new_lfs

BLOCKS = 128  # 64 KB medium
BUDGET = 40 * 1024
SEG = 1024


def _reading(i):
    return {
        "site": "s1",
        "device": "dc",
        "metric": "dc.voltage" if i % 2 else "battery.current",
        "value": 53.5 + i / 100,
        "unit": "V",
        "time": 1000.0 + i,
        "quality": "good",
    }


def _alarm(i):
    return {
        "id": "al%d" % i,
        "severity": "major",
        "state": "raise",
        "device": "dc",
        "metric": "dc.voltage",
        "value": 44.0,
        "time": 2000.0 + i,
    }


class Log:
    """What the workload was told: confirmed records (by seq) and records it acknowledged."""

    def __init__(self):
        self.appended = {}
        self.confirmed = {}
        self.acked = set()


def workload(fs, dev, log):
    st = Store("/q", BUDGET, fs=LfsFs(fs, dev), segment_bytes=SEG)
    n = 0
    for cycle in range(14):
        for _ in range(5):
            rec = _reading(n)
            n += 1
            st.append(LANE_ROUTINE, rec)
            log.appended[rec["seq"]] = copy.deepcopy(rec)
        if cycle % 4 == 1:
            rec = _alarm(cycle)
            st.append(LANE_ALARM, rec)
            log.appended[rec["seq"]] = copy.deepcopy(rec)
        conf = st.commit()
        if dev.dead:
            return  # the sync may not have landed: not a confirmation
        for seq, rec in log.appended.items():
            if seq <= conf:
                log.confirmed[seq] = rec
        if cycle % 3 == 2:
            for _ in range(3):
                b = st.next_batch(4)
                if b:
                    log.acked.update(r["seq"] for r in b[1])
                    st.ack(b[0])
        if cycle == 7:
            st.close()  # an orderly restart in the middle
            st = Store("/q", BUDGET, fs=LfsFs(fs, dev), segment_bytes=SEG)
    st.close()


def count_writes():
    dev = CutDevice(BLOCKS * 512)
    fs = new_lfs(dev, BLOCKS)
    base = dev.writes
    workload(fs, dev, Log())
    return base, dev.writes


def check_after_cut(image, log):
    fs = mount_image(image, BLOCKS)
    st = Store("/q", BUDGET, fs=LfsFs(fs), segment_bytes=SEG)  # opens without help
    seen = {}
    for lane in (LANE_ALARM, LANE_ROUTINE):
        for rec in st.records(lane):
            seq = rec["seq"]
            assert seq not in seen, "seq %d returned twice" % seq
            seen[seq] = rec
            want = log.appended.get(seq)
            assert want is not None, "seq %d was never appended" % seq
            assert rec == want, "seq %d corrupted: %r != %r" % (seq, rec, want)
    missing = [s for s in log.confirmed if s not in seen and s not in log.acked]
    assert not missing, "confirmed records lost: %r" % missing[:10]
    top = max(list(log.confirmed) + list(seen) + [-1])
    seq = st.append(LANE_ROUTINE, _reading(0))
    assert seq > top, "sequence reused: %d <= %d" % (seq, top)
    st.commit()
    st.close()


def run_all_cuts(atomic):
    base, total = count_writes()
    tried = 0
    for cut in range(base + 1, total + 1):
        dev = CutDevice(BLOCKS * 512, atomic=atomic, seed=cut)
        fs = new_lfs(dev, BLOCKS)
        dev.cut = cut
        log = Log()
        try:
            workload(fs, dev, log)
        except Exception:  # PowerCut, or littlefs's error for the write that failed at the cut
            if not dev.dead:
                raise
        assert dev.dead, "cut %d not reached" % cut
        try:
            check_after_cut(dev.image, log)
        except AssertionError as e:
            raise AssertionError("cut at write %d (atomic=%s): %s" % (cut, atomic, e)) from e
        tried += 1
    print("power cuts tried (atomic=%s): %d of %d writes" % (atomic, tried, total - base))
    return tried


def test_power_cut_at_every_write_atomic():
    assert run_all_cuts(True) > 100


def test_power_cut_at_every_write_out_of_order():
    assert run_all_cuts(False) > 100
