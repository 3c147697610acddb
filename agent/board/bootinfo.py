"""Boot record: how many times the board has booted, why, and whether it is in a boot loop
(portable: a small JSON file, replaced atomically by agent/core/store/jsonfile.py).

    rec = BootRecord("/data/boot.json", OsFs(), resets=5, window_s=600)
    info = rec.start("watchdog")    # {"count", "cause", "loop": bool, "recent": [...]}
    rec.ran(seconds)                # this boot has run that long (call every ran_step seconds)

A boot loop is `resets` resets within `window_s` seconds of running time: the last `resets`
boots before this one each ended by a reset that counts (this one's cause, and each later boot's
cause) and together ran no longer than window_s. Counted causes are the ones a crash or a hang
produces (watchdog, hard: machine.reset() or a panic on the ESP32, soft, unknown); a power-on
(power cut, brown-out, the EN button) is not a loop: the typhoon's flickering mains must not put
a site in safe mode. Running time, not wall time, because a board without RTC has no wall time
at boot. Entering safe mode clears the history (`clear()`), so a safe-mode retry starts afresh.

Flash wear: one write at boot, then one every ran_step seconds until the boot has run longer
than window_s (it can then no longer be part of a loop), then none.
"""

from agent.core.store.jsonfile import JsonFile

COUNTED = ("watchdog", "hard", "soft", "unknown")
KEEP = 16


class BootRecord:
    def __init__(self, path, fs, resets=5, window_s=600.0, ran_step=30.0):
        self.file = JsonFile(path, fs)
        self.resets = resets
        self.window_s = float(window_s)
        self.ran_step = ran_step
        self.state = {"v": 1, "count": 0, "boots": []}  # boots: [[cause, ran_s], ...]
        self._saved_ran = 0.0
        self._done = False

    def _load(self):
        data = self.file.load()  # None when absent or damaged: the count starts over
        if isinstance(data, dict) and data.get("v") == 1 and isinstance(data.get("boots"), list):
            self.state = data

    def _save(self):
        self.file.save(self.state)

    def in_loop(self):
        """True when the boots before this one form a loop (see the module docstring)."""
        boots = self.state["boots"]
        if len(boots) < self.resets + 1:
            return False
        last = boots[-(self.resets + 1) :]
        ran = 0.0
        for i in range(self.resets):
            if last[i + 1][0] not in COUNTED:
                return False
            ran += last[i][1]
        return ran <= self.window_s

    def start(self, cause):
        """Record this boot (its cause is why the previous one ended). Never raises: a board
        that cannot write its boot record still boots (the record says so)."""
        self._load()
        st = self.state
        st["count"] = int(st.get("count", 0)) + 1
        st["boots"].append([cause, 0.0])
        del st["boots"][:-KEEP]
        info = {"count": st["count"], "cause": cause, "loop": self.in_loop(), "saved": True}
        try:
            self._save()
        except OSError:
            info["saved"] = False
        info["recent"] = [b[0] for b in st["boots"][-(self.resets + 1) :]]
        return info

    def ran(self, seconds):
        """This boot has run `seconds`; saved every ran_step until past the window."""
        if self._done or seconds - self._saved_ran < self.ran_step:
            return
        self.state["boots"][-1][1] = round(seconds, 1)
        self._saved_ran = seconds
        if seconds > self.window_s:
            self._done = True
        try:
            self._save()
        except OSError:
            pass

    def clear(self):
        """Forget earlier boots (entering safe mode); this boot stays."""
        self.state["boots"] = self.state["boots"][-1:]
        try:
            self._save()
        except OSError:
            pass
