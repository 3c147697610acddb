"""The one error type tools/flash.py shows a technician: what went wrong, and what to do next.

Every failure the technician can act on (no board, wrong chip, old firmware, a board that does
not answer, a dropped cable, a full filesystem, an unreachable Pi, a config error) is raised as a
FlashError and printed by tools/flash.py as

    error: <what went wrong, naming the file, port or host>
      next: <what to do about it>

with a non-zero exit code, never as a Python traceback.
"""

EXIT_FAILED = 1  # the device, the cable or the network failed
EXIT_USAGE = 2  # bad command line or bad config: nothing was touched


class FlashError(Exception):
    def __init__(self, message, hint=None, code=EXIT_FAILED):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code

    def render(self):
        text = "error: " + self.message
        if self.hint:
            text += "\n  next: " + self.hint
        return text


class CableDropped(FlashError):
    """The serial line went away mid-operation (USB cable pulled, board reset by a brown-out)."""
