"""MQTT command dispatcher (portable): a request payload (bytes) in, a reply payload (bytes) out,
everything done through AgentFacade so the console and MQTT agree.

Request (UTF-8 JSON object, at most MAX_BYTES):
    {"id": "<correlation id>", "cmd": "<name>", "args": {...}}
Reply:
    {"v": 1, "id": <id>, "ok": true, "cmd": name, "result": ...}
    {"v": 1, "id": <id or null>, "ok": false, "error": {"code": "...", "message": "..."}}
Invariants: a request that is not well formed, names no allowed command or has bad arguments
changes nothing and gets an error reply; every command is O(1) work on the caller's thread (a poll
is only scheduled, never awaited), so a flood costs at most a token-bucket check per message. Past
the command rate, requests are refused with "rate_limited"; past the (lower) refusal rate they are
dropped without a reply and counted, so a flood cannot turn the agent into a reply amplifier.
"""

import json

from agent.core.compat import monotonic, wall_time
from agent.core.uplink.backoff import TokenBucket

MAX_BYTES = 4096
MAX_ID = 64

# code -> meaning; the codes are part of contract v1 (docs/mqtt.md).
ERRORS = (
    "oversized",
    "not_utf8",
    "malformed",
    "unknown_command",
    "bad_args",
    "unknown_device",
    "rate_limited",
    "internal",
)


class CommandError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def _device_arg(args, required):
    dev = args.get("device")
    if dev is None and not required:
        return None
    if not isinstance(dev, str) or not dev:
        raise CommandError("bad_args", "args.device must be a device id (string)")
    return dev


class Remote:
    """handle(payload) -> reply bytes, or None when the request is dropped in a flood."""

    def __init__(self, facade, rate=5.0, burst=10, refuse_rate=1.0, clock=monotonic, log=None):
        self.facade = facade
        self.clock = clock
        self.log = log
        self.bucket = TokenBucket(rate, burst, clock())
        self.refusals = TokenBucket(refuse_rate, max(1, int(refuse_rate * 5)), clock())
        self.counts = {"ok": 0, "error": 0, "dropped": 0}
        self._request_id = None  # the id of the request being handled, for the change log
        self.commands = {
            "ping": self._ping,
            "status": self._status,
            "poll_now": self._poll_now,
            "readings": self._readings,
            "queue_stats": self._queue_stats,
            "config": self._config,
            "set_interval": self._set_interval,
        }

    # --- commands ------------------------------------------------------------------------
    def _ping(self, args):
        return {"pong": True, "time": wall_time()}

    def _status(self, args):
        return self.facade.status()

    def _poll_now(self, args):
        dev = _device_arg(args, False)
        self._known(dev)
        self.facade.poll_now(dev)
        return {"scheduled": dev if dev is not None else "all"}

    def _readings(self, args):
        dev = _device_arg(args, False)
        self._known(dev)
        return self.facade.readings(dev)

    def _queue_stats(self, args):
        return self.facade.queue_stats()

    def _config(self, args):
        return self.facade.config_redacted()

    def _set_interval(self, args):
        dev = _device_arg(args, True)
        secs = args.get("seconds")
        if isinstance(secs, bool) or not isinstance(secs, (int, float)):
            raise CommandError("bad_args", "args.seconds must be a number")
        self._known(dev)
        try:
            # Logged by the facade with who and where, as a console change is.
            got = self.facade.set_interval(dev, secs, by="mqtt request %r" % (self._request_id,),
                                           where="command topic")  # fmt: skip
        except ValueError as e:
            raise CommandError("bad_args", str(e)) from e
        return {"device": dev, "interval": got, "until": "restart"}

    def _known(self, dev):
        if dev is not None and not self.facade.has_device(dev):
            raise CommandError("unknown_device", "no device %r at this site" % dev)

    # --- dispatch ------------------------------------------------------------------------
    def _parse(self, payload):
        if len(payload) > MAX_BYTES:
            raise CommandError(
                "oversized", "request of %d bytes; the limit is %d" % (len(payload), MAX_BYTES)
            )
        try:
            text = bytes(payload).decode("utf-8")
        except UnicodeError:
            raise CommandError("not_utf8", "request is not valid UTF-8") from None
        try:
            req = json.loads(text)
        except ValueError:
            raise CommandError("malformed", "request is not JSON (truncated?)") from None
        if not isinstance(req, dict):
            raise CommandError("malformed", "request must be a JSON object")
        return req

    def _id(self, req):
        cid = req.get("id")
        if cid is None or isinstance(cid, bool):
            return None
        if isinstance(cid, int) or (isinstance(cid, str) and 0 < len(cid) <= MAX_ID):
            return cid
        return None

    def handle(self, payload):
        now = self.clock()
        if self.bucket.wait_time(now) > 0:
            if self.refusals.wait_time(now) > 0:
                self.counts["dropped"] += 1
                return None
            self.refusals.take(now)
            return self._error(None, "rate_limited", "too many commands; try again later")
        self.bucket.take(now)
        cid = None
        try:
            req = self._parse(payload)
            cid = self._id(req)
            self._request_id = cid
            if cid is None:
                raise CommandError("malformed", "request needs an id: a string of 1-64 chars")
            name = req.get("cmd")
            fn = self.commands.get(name) if isinstance(name, str) else None
            if fn is None:
                raise CommandError(
                    "unknown_command",
                    "unknown command %r; allowed: %s" % (name, ", ".join(sorted(self.commands))),
                )
            args = req.get("args", {})
            if args is None:
                args = {}
            if not isinstance(args, dict):
                raise CommandError("bad_args", "args must be a JSON object")
            result = fn(args)
            body = {"v": 1, "id": cid, "ok": True, "cmd": name, "result": result}
            out = json.dumps(body, separators=(",", ":")).encode()
            self.counts["ok"] += 1
            return out
        except CommandError as e:
            return self._error(cid, e.code, e.message)
        except Exception as e:  # a bug behind the facade must not kill the uplink
            if self.log is not None:
                self.log.error("remote", "command failed", error=repr(e))
            return self._error(cid, "internal", "%s: %s" % (e.__class__.__name__, e))

    def _error(self, cid, code, message):
        self.counts["error"] += 1
        body = {"v": 1, "id": cid, "ok": False, "error": {"code": code, "message": message}}
        return json.dumps(body, separators=(",", ":")).encode()
