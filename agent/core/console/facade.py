"""What the technician's console needs beyond AgentFacade (portable).

The console works only through this object. The runtime supplies what it alone can do as hooks:

    ConsoleFacade(cfg, loop, queue, uplink, clock, log,
                  uplink_test=async fn(say) -> bool,   # connect and publish a probe, say() steps
                  check_config=fn() -> [(level, text)],  # reread the config file and validate it
                  restart=fn(),                        # restart the agent (host: the process)
                  runtime="CPython 3.11 linux")

Every method returns plain data or raises a typed error (QueueError, KeyError, ValueError) that
the console turns into one line; none returns a secret.
"""

import sys

from agent.core.errors import QueueError
from agent.core.facade import AgentFacade
from agent.core.store.report import export_failed


def _runtime():
    impl = sys.implementation
    v = impl.version
    return "%s %d.%d.%d on %s" % (impl.name, v[0], v[1], v[2], sys.platform)


class ConsoleFacade(AgentFacade):
    def __init__(self, cfg, loop, queue, uplink=None, clock=None, log=None, uplink_test=None,
                 check_config=None, restart=None, runtime=None):  # fmt: skip
        AgentFacade.__init__(self, cfg, loop, queue, uplink, clock, log)
        self._uplink_test = uplink_test
        self._check_config = check_config
        self._restart = restart
        self.runtime = runtime or _runtime()

    def clock_state(self):
        """{"trusted": bool, "source": str or None, ...}; a plain system clock counts as
        untrusted-but-used."""
        c = self.clock
        if c is None:
            return {"trusted": None, "source": "system clock (not checked)"}
        if hasattr(c, "state_dict"):
            return c.state_dict()
        return {"trusted": c.trusted(), "source": getattr(c, "source", None)}

    def status(self):
        clock, self.clock = self.clock, None  # the base reads clock.state(); ours is richer
        try:
            out = AgentFacade.status(self)
        finally:
            self.clock = clock
        out["clock"] = self.clock_state()
        last = None
        for st in self.loop.sched.devices.values():
            if st.last_poll is not None and (last is None or st.last_poll > last):
                last = st.last_poll
        out["last_poll"] = last  # monotonic seconds, None before the first poll
        out["name"] = self.cfg.site.get("name")
        return out

    def uplink_state(self):
        return self.uplink.state() if self.uplink is not None else None

    def version_info(self):
        from agent import __version__

        return {"version": __version__, "runtime": self.runtime}

    async def uplink_test(self, say):
        """Connect to every broker in order and publish a probe, calling say(text) for every
        step. Returns True when every broker accepted its probe."""
        if not self.cfg.uplink:
            say("no [uplink] in the config: readings are stored only")
            return False
        if self._uplink_test is None:
            say("uplink test is not available in this build")
            return False
        return await self._uplink_test(say)

    def drain(self, by="?", where="?"):
        """Ask the uplink to send the backlog now (cutting a backoff wait short where the uplink
        can). Returns {"depth": records queued, "connected": bool or None}. Logged with who asked
        and from where."""
        depth = self.queue_depth()
        self.changed("drain requested", by, where, queued=depth)
        if self.uplink is None:
            return {"depth": depth, "connected": None}
        kick = getattr(self.uplink, "drain", None)
        if kick is not None:
            kick()
        else:
            self.uplink.notify()
        st = self.uplink.state()
        return {"depth": depth, "connected": st.get("connected"), "state": st}

    def queue_depth(self):
        depth = self.queue.stats().get("depth", {})
        return sum(depth.values())

    def export(self, path, by="?", where="?"):
        """Write the backlog to path as JSON lines; returns the number of records. Refuses an
        existing file. Writes path + ".part" and renames it at the end, so a stick pulled out
        mid-export never holds a file that looks complete. Logged with who and from where."""
        fn = getattr(self.queue, "export", None)
        fs = getattr(self.queue, "fs", None)
        if fn is None or fs is None:
            raise QueueError("this agent's queue is in memory only: nothing durable to export")
        if fs.size(path) is not None:
            raise QueueError("%s exists; choose another name" % path)
        part = path + ".part"
        try:
            n = fn(part)
            fs.rename(part, path)
        except OSError as e:
            try:
                fs.remove(part)
            except OSError:
                pass
            raise export_failed(path, e) from e
        self.changed("backlog exported", by, where, path=path, records=n)
        return n

    def config_check(self):
        """[(level, text)]: "ok", "warning" or "error" lines about the config file on disk."""
        if self._check_config is not None:
            return self._check_config()
        out = [("ok", "config in use (%s) is valid" % self.cfg.source)]
        for w in self.cfg.warnings:
            out.append(("warning", w))
        return out

    def restart(self):
        if self._restart is None:
            raise ValueError("restart is not available in this build")
        if self.log is not None:
            self.log.warning("console", "restart requested by the technician")
        self._restart()
