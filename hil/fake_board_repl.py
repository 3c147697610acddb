"""The simulated board's REPL on its UART, as bytes (host only): hil/fake_board.py's REPL.

    repl = Repl(banner, send, boot, command)   # send(bytes), boot(cause), command(kind, payload)
    repl.feed(rx)               # consume host bytes while no command runs
    repl.outcome(kind, body)    # the VM finished what it was given: answer as the board does
    repl.booting(hard)          # a boot starts: -> the VM's "B" payload (b"main": friendly)

The bytes are MicroPython's (shared/runtime/pyexec.c): the friendly REPL (banner, `>>> `, echo,
Ctrl-A/B/C/D), the raw REPL (Ctrl-A enters and prints `raw REPL; CTRL-B to exit\\r\\n>`, Ctrl-D
runs the input and answers `OK`, output, `\\x04`, error text, `\\x04`, `>`; an empty input is a
soft reset), and raw paste (`\\x05A\\x01` answered `R\\x01`, a 2-byte window of 128, then `\\x01`
for each window consumed, `\\x04` to acknowledge the end).

Invariant: `busy` is what the VM is doing ("boot", "exec", "paste", "line" or None); host bytes
wait in the board's buffer while it is set, as they wait in a board's UART buffer. The mode
("friendly" or "raw") survives a soft reset; a hard one returns to friendly.
"""

BANNER_FMT = ('MicroPython v{version} on {date}; {machine}\r\n'
              'Type "help()" for more information.\r\n')
RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"
PASTE_WINDOW = 128  # half of MICROPY_REPL_STDIN_BUFFER_MAX (256)


class Repl:
    def __init__(self, banner, send, boot, command):
        self.banner = banner
        self._send = send
        self._boot = boot
        self._command = command
        self.mode = "friendly"  # or "raw"; kept over a soft reset, friendly after a hard one
        self.busy = None  # what the VM is doing: "boot", "exec", "paste", "line" or None
        self._line = bytearray()
        self._paste = None  # bytearray while raw paste input is arriving
        self._paste_remain = 0

    def booting(self, hard):
        """A boot starts; returns the payload of the VM's boot command."""
        if hard:
            self.mode = "friendly"
        self._line.clear()
        self.busy = "boot"
        return b"main" if self.mode == "friendly" else b""

    def feed(self, rx):
        """Take bytes off the front of the bytearray rx until a command runs."""
        while rx and self.busy is None:
            c = rx[0]
            del rx[0]
            if self._paste is not None:
                self._paste_byte(c)
            elif self.mode == "raw":
                self._raw_byte(c)
            else:
                self._friendly_byte(c)

    def outcome(self, kind, body):
        """The VM's answer to a command: S (soft reset), or the end of the code with its error
        text (empty when none). A machine.reset() (R) is the board's, not the REPL's."""
        busy, self.busy = self.busy, None
        if kind == b"S":
            if busy in ("exec", "paste"):
                self._send(b"\x04\x04")
            self._boot("SOFT_RESET")
            return
        err = body.replace(b"\n", b"\r\n")
        if busy in ("exec", "paste"):
            self._send(b"\x04" + err + b"\x04>")
        elif busy == "line":
            self._send(err + b">>> ")
        elif busy == "boot":
            if self.mode == "raw":
                self._send(RAW_PROMPT)
            else:
                self._send(self.banner + b">>> ")

    def _raw_byte(self, c):
        if c == 0x01:  # Ctrl-A
            if len(self._line) == 2 and self._line[0] == 0x05:
                kind = self._line[1]
                self._line.clear()
                if kind != ord("A"):
                    self._send(b"R\x00>")
                    return
                self._send(b"R\x01" + PASTE_WINDOW.to_bytes(2, "little") + b"\x01")
                self._paste = bytearray()
                self._paste_remain = PASTE_WINDOW
                return
            self._line.clear()
            self._send(RAW_PROMPT)
        elif c == 0x02:  # Ctrl-B
            self._line.clear()
            self.mode = "friendly"
            self._send(b"\r\n" + self.banner + b">>> ")
        elif c == 0x03:  # Ctrl-C
            self._line.clear()
        elif c == 0x04:  # Ctrl-D
            self._send(b"OK")
            if not self._line:
                self._send(b"\r\n")
                self._boot("SOFT_RESET")
                return
            code, self._line = bytes(self._line), bytearray()
            self.busy = "exec"
            self._command(b"E", code)
        else:
            self._line.append(c)

    def _paste_byte(self, c):
        if c in (0x03, 0x04):
            code, self._paste = bytes(self._paste), None
            self._send(b"\x04")
            if c == 0x03:
                self._send(b"\x04Traceback (most recent call last):\r\nKeyboardInterrupt: "
                           b"\r\n\x04>")  # fmt: skip
                return
            self.busy = "paste"
            self._command(b"E", code)
            return
        self._paste.append(c)
        self._paste_remain -= 1
        if self._paste_remain == 0:
            self._send(b"\x01")
            self._paste_remain = PASTE_WINDOW

    def _friendly_byte(self, c):
        if c == 0x01:
            self._line.clear()
            self.mode = "raw"
            self._send(b"\r\n" + RAW_PROMPT)
        elif c == 0x02:
            self._line.clear()
            self._send(b"\r\n" + self.banner + b">>> ")
        elif c == 0x03:
            self._line.clear()
            self._send(b"\r\n>>> ")
        elif c == 0x04:
            if not self._line:
                self._send(b"\r\n")
                self._boot("SOFT_RESET")
        elif c in (0x08, 0x7F):
            if self._line:
                del self._line[-1]
                self._send(b"\x08 \x08")
        elif c == 0x0D:
            self._send(b"\r\n")
            line, self._line = bytes(self._line), bytearray()
            if line.strip():
                self.busy = "line"
                self._command(b"L", line)
            else:
                self._send(b">>> ")
        elif 0x20 <= c < 0x7F:
            self._line.append(c)
            self._send(bytes((c,)))
        # Other bytes (escape sequences, \n after \r) are ignored.
