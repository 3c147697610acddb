"""Typed errors of the portable core. Input from devices, networks and users raises these, never
AssertionError; each carries a message that names what was wrong and where."""


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class ConfigError(AgentError):
    """A site config is invalid. `errors` lists every problem found, each already formatted as
    "<file>: <key path>: <what was expected>, got <what was found>"."""

    def __init__(self, errors):
        if isinstance(errors, str):
            errors = [errors]
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


class DeviceError(AgentError):
    """A device could not be read: no answer, a refused connection, a reply we cannot use.
    The scheduler marks the device stale with str(error) as the reason."""


class DeviceTimeout(DeviceError):
    """The device did not answer within its time budget."""


class ParseError(DeviceError):
    """Bytes from a device or the network do not follow the protocol. Parsers raise only this."""


class QueueError(AgentError):
    """The store could not do what was asked (I/O error, full medium, corrupt file)."""


# errno -> what it means at a site, for messages a technician reads (same numbers on MicroPython)
_OS_REASONS = {
    2: "no such file or directory",
    5: "I/O error (the medium may be failing)",
    13: "permission denied",
    17: "it already exists",
    20: "a part of the path is not a directory",
    21: "it is a directory",
    28: "no space left on the medium",
    30: "the medium is read-only",
}


def os_reason(e):
    """What an OSError means, in words: no errno number, no Python wording."""
    code = getattr(e, "errno", None)
    if code is None and e.args and isinstance(e.args[0], int):
        code = e.args[0]
    if code in _OS_REASONS:
        return _OS_REASONS[code]
    text = getattr(e, "strerror", None)
    return text[:1].lower() + text[1:] if text else str(e)
