"""The durable store on real small media: a 2 MB tmpfs (mounted by the test in a private mount
namespace, real fsync) and littlefs with a tiny block count (littlefs-python).

The field case of issue 12: storage.budget_mb (64 MB) larger than the medium (2 MB), the broker
down. The store must keep within what the medium holds (thinning, then dropping), never stall,
open on a full medium (a torn tail included), free the medium as the backlog is delivered, and
keep alarms when others fill the disk."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from littlefs.context import UserContext

from agent.core.errors import QueueError
from agent.core.store.queue import LANE_ALARM, LANE_ROUTINE
from agent.core.store.store import Store

from store_support import BLOCK, LfsFs, new_lfs

REPO = Path(__file__).resolve().parents[2]


def _reading(i):
    metric = "dc.voltage" if i % 2 else "battery.current"
    return {"site": "s1", "device": "dc", "metric": metric, "value": 53.5 + i % 50 / 100,
            "unit": "V", "time": 1.7e9 + i, "quality": "good"}  # fmt: skip


def _alarm(i):
    return {"site": "s1", "device": "dc", "metric": "dc.voltage", "value": 44.0, "n": i,
            "alarm": "LOW/dc/dc.voltage", "event": "raise", "time": 1.8e9 + i}  # fmt: skip


# --- tmpfs ----------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import json, os, subprocess, sys
    from agent.core.errors import QueueError
    from agent.core.store.queue import LANE_ALARM, LANE_ROUTINE
    from agent.host.queue_cli import open_store

    mnt = sys.argv[1]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt], check=True)
    out = {"errors": []}

    def rec(i):
        metric = "dc.voltage" if i % 2 else "battery.current"
        return {"site": "s1", "device": "dc", "metric": metric, "value": 53.5 + i % 50 / 100,
                "unit": "V", "time": 1.7e9 + i, "quality": "good"}

    def free():
        st = os.statvfs(mnt)
        return st.f_bavail * st.f_frsize

    def run(st, first, n, every=100):
        for i in range(first, first + n):
            st.append(LANE_ROUTINE, rec(i))
            if i % every == every - 1:
                try:
                    st.commit()
                except QueueError as e:
                    out["errors"].append(str(e))

    q = mnt + "/queue"
    st = open_store(q, 64 << 20, thin_window=600)  # the field config: 64 MB on a 2 MB medium
    out["budget"] = st.budget
    out["segment"] = st.segment_bytes
    for k in range(3):
        st.append(LANE_ALARM, {"site": "s1", "device": "dc", "metric": "dc.voltage",
                               "alarm": "LOW/dc/dc.voltage", "event": "raise", "n": k,
                               "value": 44.0, "time": 1.8e9 + k})
    run(st, 0, 40000)  # about 6 MB of readings, the broker down
    s = st.stats()
    out["after_fill"] = {"free": free(), "dropped": s["dropped"], "thinned": s["thinned"],
                         "bytes": s["bytes"], "depth": s["depth"]}
    # a torn tail (a power cut mid-write), then others fill every block left
    tail = sorted(n for n in os.listdir(q) if n.startswith("r"))[-1]
    with open(q + "/" + tail, "ab") as f:
        f.write(b"\\xa7\\x01\\x40\\x00torn")
    try:
        with open(mnt + "/other.log", "wb") as f:
            while True:
                f.write(b"x" * 4096)
                f.flush()
    except OSError:
        pass
    out["full_free"] = free()
    del st  # a kill: no close
    st = open_store(q, 64 << 20, thin_window=600)  # opens on the full medium
    out["reopened_depth"] = st.stats()["depth"]
    run(st, 40000, 2000)  # and stores again: routine data made room
    out["dropped_full"] = st.stats()["dropped"]
    out["alarms"] = [r["n"] for r in st.records(LANE_ALARM)]
    out["last_seq"] = [r["seq"] for r in st.records(LANE_ROUTINE)][-1]
    out["confirmed"] = st.confirmed_seq
    # the broker is back: the backlog drains and the medium frees
    before = free()
    while True:
        b = st.next_batch(500)
        if b is None:
            break
        st.ack(b[0])
    st.commit()
    out["drained_free_gain"] = free() - before
    out["depth_end"] = st.stats()["depth"]
    st.close()
    print("RESULT " + json.dumps(out))
    """
)


def _in_private_mount_namespace(args):
    """Run args in a new mount namespace (root: unshare -m; otherwise a user namespace too):
    what the child mounts disappears with it."""
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is needed to mount a private tmpfs"
    ns = ["-m", "--propagation", "private"] if os.geteuid() == 0 else ["-r", "-m"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([unshare, *ns, *args], capture_output=True, text=True, env=env,
                       timeout=600, check=False)  # fmt: skip
    assert r.returncode == 0, "the child in a private mount namespace failed:\n" + r.stderr
    return r.stdout


def test_a_2mb_tmpfs_with_a_64mb_budget_never_fills_and_recovers(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    out = _in_private_mount_namespace([sys.executable, "-c", CHILD, str(mnt)])
    res = json.loads(out.split("RESULT ", 1)[1])
    assert res["budget"] < 2 << 20 and res["segment"] < 200 << 10, res
    fill = res["after_fill"]
    assert fill["free"] > 0 and fill["thinned"] > 0, res  # thinning was enough, so far
    assert fill["bytes"] <= res["budget"], res
    assert res["full_free"] < 4096, res  # the other file really took the medium
    assert res["reopened_depth"]["routine"] > 0, res
    assert res["dropped_full"] > fill["dropped"], res  # the full medium cost the oldest data
    assert res["alarms"] == [0, 1, 2], res  # never dropped for routine data
    assert res["last_seq"] == res["confirmed"], res  # the readings after the reopen are stored
    assert not res["errors"], res["errors"][:3]  # no commit ever failed: dropping, not a stall
    assert res["drained_free_gain"] > 256 << 10 and res["depth_end"] == {"alarm": 0, "routine": 0}


# --- littlefs -------------------------------------------------------------------------------


def test_littlefs_with_a_tiny_block_count_keeps_within_it_and_opens_when_full():
    blocks = 64  # 32 KB medium, 512-byte blocks
    ctx = UserContext(buffsize=blocks * BLOCK)
    lfs = new_lfs(ctx, blocks)
    fs = LfsFs(lfs)
    st = Store("/q", 1 << 20, fs=fs, thin_window=60)
    assert st.budget < blocks * BLOCK
    st.append(LANE_ALARM, _alarm(0))
    for i in range(3000):
        st.append(LANE_ROUTINE, _reading(i))
        if i % 10 == 9:
            st.commit()  # never raises
    s = st.stats()
    assert s["dropped"] > 0 and lfs.used_block_count < blocks
    last = [r["seq"] for r in st.records(LANE_ROUTINE)][-1]
    assert last == st.confirmed_seq
    # others take every block left, and the agent restarts (no close: a kill)
    try:
        with lfs.open("/other", "wb") as f:
            while True:
                f.write(b"x" * BLOCK)
                f.flush()
    except Exception:  # littlefs-python's LFS_ERR_NOSPC
        pass
    st2 = Store("/q", 1 << 20, fs=fs, thin_window=60)
    assert [r["n"] for r in st2.records(LANE_ALARM)] == [0]
    for i in range(3000, 3100):
        st2.append(LANE_ROUTINE, _reading(i))
        if i % 10 == 9:
            st2.commit()
    assert [r["seq"] for r in st2.records(LANE_ROUTINE)][-1] == st2.confirmed_seq
    assert [r["n"] for r in st2.records(LANE_ALARM)] == [0]
    st2.close()


def _fill(lfs):
    """Others take every block left, one block per file (each write that fits stays); the
    names, to free them again."""
    others = []
    try:
        while True:
            with lfs.open("/other%d" % len(others), "wb") as f:
                f.write(b"x" * BLOCK)
            others.append("/other%d" % len(others))
    except Exception:  # littlefs-python's LFS_ERR_NOSPC
        pass
    return others


def test_space_others_free_is_taken_up_again_by_a_store_that_writes_nothing():
    # The field drill: the agent restarts on a medium others filled; its own backlog was
    # delivered, so it has nothing to drop and its budget is 0: every routine reading is
    # dropped, nothing is written, no segment is ever sealed. When the other file goes, the
    # store must notice within REFIT_S and store readings again (not wait for a restart).
    blocks = 64
    ctx = UserContext(buffsize=blocks * BLOCK)
    lfs = new_lfs(ctx, blocks)
    fs = LfsFs(lfs)
    fs.mkdir("/q")  # the agent ran here before
    others = _fill(lfs)
    now = [0.0]
    st = Store("/q", 1 << 20, fs=fs, thin_window=60, mono=lambda: now[0])
    assert st.budget == 0
    for i in range(20):
        st.append(LANE_ROUTINE, _reading(i))
    st.commit()
    assert st.stats()["dropped"] == 20 and st.stats()["depth"]["routine"] == 0
    for name in others:
        lfs.remove(name)
    now[0] += 31  # REFIT_S later: a commit looks at the medium again
    st.commit()
    assert 0 < st.budget < blocks * BLOCK
    for i in range(20, 40):
        st.append(LANE_ROUTINE, _reading(i))
    st.commit()
    values = [r["value"] for r in st.records(LANE_ROUTINE) if r["device"] == "dc"]
    assert values[-1] == _reading(39)["value"]
    assert st.stats()["depth"]["routine"] >= 20
    st.close()


def test_a_store_opens_on_a_medium_too_full_for_its_folder_and_stores_once_there_is_room():
    # The first start on a medium others filled: there is no room even for the store's
    # folder. The store opens empty and faulted (the agent runs, alarms go upstream from RAM)
    # and writes everything once room appears.
    blocks = 64
    ctx = UserContext(buffsize=blocks * BLOCK)
    lfs = new_lfs(ctx, blocks)
    fs = LfsFs(lfs)
    others = _fill(lfs)
    now = [0.0]
    st = Store("/q", 1 << 20, fs=fs, thin_window=60, mono=lambda: now[0])
    assert st.fault is not None
    st.append(LANE_ALARM, _alarm(0))
    st.append(LANE_ROUTINE, _reading(0))
    for _ in range(2):
        try:
            st.commit()
        except QueueError as e:
            assert "no space left" in str(e)
    assert len(st.pending[LANE_ALARM]) == 1  # in RAM, not lost (routine: dropped, budget 0)
    for name in others[: len(others) // 2]:
        lfs.remove(name)
    now[0] += 31
    assert st.commit() == st.next_seq - 1
    st.close()
    st = Store("/q", 1 << 20, fs=fs, thin_window=60)
    assert [r["n"] for r in st.records(LANE_ALARM)] == [0]
    st.close()
