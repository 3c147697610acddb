# Boot record and boot-loop detection (agent/board/bootinfo.py) on an in-memory filesystem.
from agent.board.bootinfo import BootRecord
from agent.core.store.fsio import MemFs


def _boots(fs, causes, ran=5.0, resets=3, window_s=600):
    info = None
    for cause in causes:
        rec = BootRecord("/data/boot.json", fs, resets, window_s, ran_step=1)
        info = rec.start(cause)
        rec.ran(ran)
    return info, rec


def test_counts_boots_and_keeps_causes():
    fs = MemFs()
    info, _ = _boots(fs, ["power_on", "hard"])
    assert info["count"] == 2 and info["cause"] == "hard" and info["saved"]
    assert info["recent"] == ["power_on", "hard"] and not info["loop"]


def test_three_quick_crash_resets_are_a_loop():
    info, _ = _boots(MemFs(), ["power_on", "watchdog", "hard", "watchdog"])
    assert info["loop"]


def test_power_cuts_are_never_a_loop():
    info, _ = _boots(MemFs(), ["power_on"] * 8, ran=1.0)
    assert not info["loop"]
    info, _ = _boots(MemFs(), ["power_on", "watchdog", "power_on", "watchdog"])
    assert not info["loop"]


def test_resets_spread_over_more_running_time_than_the_window_are_not_a_loop():
    info, _ = _boots(MemFs(), ["power_on", "watchdog", "watchdog", "watchdog"], ran=300.0)
    assert not info["loop"]


def test_clear_starts_afresh_after_safe_mode():
    fs = MemFs()
    info, rec = _boots(fs, ["power_on", "watchdog", "watchdog", "watchdog"])
    assert info["loop"]
    rec.clear()
    info, _ = _boots(fs, ["hard"])  # safe mode's own reset to retry the agent
    assert not info["loop"] and info["count"] == 5


def test_a_damaged_record_starts_over_instead_of_failing():
    fs = MemFs()
    f = fs.open("/data/boot.json", "wb")
    f.write(b"{not json")
    f.close()
    info, _ = _boots(fs, ["watchdog"])
    assert info["count"] == 1 and not info["loop"]
