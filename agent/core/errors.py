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
