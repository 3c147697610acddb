"""The agent's data directory during a drill (host only): where it is, filling it, giving it back.

    data = DataDir(out_dir, "pi", rig.agent)
    how = data.make()      # out_dir/data; says what it is (tmpfs, plain directory, board flash)
    note = data.fill()     # the scenario's disk_full: None when done, else why it was skipped
    data.free()            # disk_ok
    data.unmount()         # at teardown: the tmpfs's content is kept in out_dir/data

When the drill runs as root it mounts a tmpfs of its own there (twice the store's budget plus
8 MB), so "disk full" is a real ENOSPC the agent meets; otherwise it is a plain directory and
disk_full events are skipped, as they are for a board, whose store is on littlefs in its flash.
"""

import os
import shutil
import subprocess


class DataDir:
    def __init__(self, out, agent_kind, rig_agent):
        self.out = out
        self.path = os.path.join(out, "data")
        self.agent_kind = agent_kind
        self.rig_agent = rig_agent  # the rig's [agent] table
        self.mount = None
        self.filler = None
        self.full = False

    def make(self):
        os.makedirs(self.path, exist_ok=True)
        if self.agent_kind == "board":
            from firmware import board_table

            fs_kb = board_table.load(self.rig_agent["board"])["fs_kb"]
            return ("the board's littlefs (%d KB flash partition in a file; disk_full events "
                    "are skipped)" % fs_kb)  # fmt: skip
        if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount"):
            size_mb = int(self.rig_agent.get("config", {}).get("storage", {}).get("budget_mb", 64))
            argv = ["mount", "-t", "tmpfs", "-o", "size=%dm" % (size_mb * 2 + 8), "hil-drill",
                    self.path]  # fmt: skip
            r = subprocess.run(argv, capture_output=True, text=True)
            if r.returncode == 0:
                self.mount = self.path
                return "tmpfs of %d MB" % (size_mb * 2 + 8)
        return "a plain directory (not root: disk_full events are skipped)"

    def fill(self):
        if self.agent_kind == "board":
            return ("skipped: the board's store is on littlefs in its flash partition, which "
                    "the drill cannot fill from outside while the board runs")  # fmt: skip
        if self.mount is None:
            return "skipped: the data directory is not a tmpfs of the drill's (needs root)"
        self.filler = os.path.join(self.path, "drill-filler")
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for size in (1 << 20, 4096, 1):  # unbuffered: every byte the tmpfs takes is written
                chunk = b"\0" * size
                try:
                    while True:
                        os.write(fd, chunk)
                except OSError:
                    pass
        finally:
            os.close(fd)
        self.full = True
        return None

    def free(self):
        if self.filler and os.path.exists(self.filler):
            os.remove(self.filler)
        self.full = False

    def unmount(self):
        if self.mount is None:
            return
        try:
            self.free()
            # Keep the agent's store for inspection: copy it out of the tmpfs first.
            keep = os.path.join(self.out, "data-kept")
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(self.path, keep, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.sock"))  # fmt: skip
        finally:
            subprocess.run(["umount", self.mount], capture_output=True)
            self.mount = None
        shutil.rmtree(self.path, ignore_errors=True)
        os.rename(keep, self.path)
