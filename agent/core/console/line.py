"""Line discipline of the technician's console (portable): bytes from a terminal in, edited lines
and echo out. No terminal escape codes are sent, and none are needed from the terminal.

    ld = LineDiscipline(max_line=200)
    for kind, value in ld.feed(data):     # kind: "echo" (bytes), "line" (str), "error" (str),
        ...                               #       "cancel" (Ctrl-C: line thrown away)

Invariants:
- A line ends at CR, LF or CRLF (a CR followed by LF is one end, even split across feeds).
- Backspace (0x08) and DEL (0x7f) delete the last character and echo "\\b \\b"; Ctrl-U clears the
  line; Ctrl-C throws the line away.
- Escape sequences (arrow and function keys: ESC [ ... final, ESC O x, ESC ] ... BEL or ESC \\,
  ESC x) are swallowed whole and never reach the line; one that runs past MAX_ESC bytes is given
  up and counted as noise.
- NUL, Ctrl-D, BEL, tab, Ctrl-L, XON/XOFF and Ctrl-Z are ignored (habit keys, a break).
- Any other byte that is not printable ASCII (control codes, 0x80-0xff: line noise, a wrong baud
  rate, binary garbage) is noise: the line it lands in is thrown away at its end with an "error"
  rather than run with characters missing, because a half-heard command must not run.
- Whatever follows "login " on a line echoes as "*", like a PIN at the PIN prompt: a PIN typed
  as an argument (`login 2468`, refused) never shows on the screen.
- A line never holds more than max_line characters; past that the rest is swallowed up to the
  line end, which then gives an "error" ("line too long"), not a truncated command.
- Memory is bounded by max_line whatever arrives.
"""

_NORMAL = 0
_ESC = 1  # after ESC
_CSI = 2  # ESC [ ... up to a final byte 0x40-0x7e
_SS3 = 3  # ESC O x
_OSC = 4  # ESC ] ... up to BEL or ESC \
_OSC_ESC = 5  # ESC inside an OSC string

MAX_ESC = 32
# Keys people press out of habit, and what a line gives on a break: ignored, not noise. NUL
# (break), Ctrl-D, BEL, tab, Ctrl-L (clear screen), XON/XOFF, Ctrl-Z.
_HARMLESS = (0x00, 0x04, 0x07, 0x09, 0x0C, 0x11, 0x13, 0x1A)
BS_ECHO = b"\x08 \x08"
EOL = b"\r\n"
SECRET_AFTER = "login "  # the rest of a line starting so is masked as it is typed


class LineDiscipline:
    def __init__(self, max_line=200, echo=True):
        self.max_line = max_line
        self.echo = echo
        self.mask = False  # echo "*" for each character (PIN entry)
        self.buf = []
        self.state = _NORMAL
        self.esc_len = 0
        self.after_cr = False
        self.noise = 0  # noise bytes in the current line
        self.overflow = 0  # characters dropped past max_line in the current line
        self.noise_total = 0  # for the console's status

    def reset(self):
        self.buf = []
        self.noise = 0
        self.overflow = 0
        self.state = _NORMAL

    def _end(self, out):
        if self.echo:
            out.append(("echo", EOL))
        line = "".join(self.buf)
        noise, over = self.noise, self.overflow
        self.buf = []
        self.noise = 0
        self.overflow = 0
        if over:
            out.append(("error", "line too long (max %d characters); ignored" % self.max_line))
        elif noise:
            out.append(("error", "line noise (%d bytes not understood); line ignored" % noise))
        else:
            out.append(("line", line))

    def _secret_tail(self):
        """The character just added follows "login " at the start of the line."""
        n = len(SECRET_AFTER)
        return len(self.buf) > n and "".join(self.buf[:n]).lower() == SECRET_AFTER

    def _noise(self, n=1):
        self.noise += n
        self.noise_total += n

    def feed(self, data):
        """All events for data at once (the mask cannot change midway; see step)."""
        out = []
        i = 0
        while i < len(data):
            ev, i = self.step(data, i)
            out.extend(ev)
        return out

    def step(self, data, i=0):
        """(events, next index): bytes of data from i up to and including the first line end,
        Ctrl-C or Ctrl-U. The caller acts on a line (which may turn the mask on for a PIN)
        before the bytes typed after it are echoed."""
        out = []
        echo = []
        n = len(data)
        while i < n:
            b = data[i]
            i += 1
            st = self.state
            if st != _NORMAL:
                self.esc_len += 1
                if self.esc_len > MAX_ESC:
                    self.state = _NORMAL
                    self._noise(self.esc_len)
                elif st == _ESC:
                    self.state = _CSI if b == 0x5B else _SS3 if b == 0x4F else (
                        _OSC if b == 0x5D else _NORMAL)  # fmt: skip
                elif st == _CSI:
                    if 0x40 <= b <= 0x7E:
                        self.state = _NORMAL
                    elif b < 0x20 or b > 0x7E:
                        self.state = _NORMAL
                        self._noise()
                elif st == _SS3:
                    self.state = _NORMAL
                elif st == _OSC:
                    if b == 0x07:
                        self.state = _NORMAL
                    elif b == 0x1B:
                        self.state = _OSC_ESC
                else:  # _OSC_ESC
                    self.state = _NORMAL if b == 0x5C else _OSC
                continue
            if b == 0x0A and self.after_cr:
                self.after_cr = False
                continue
            self.after_cr = b == 0x0D
            if 0x20 <= b <= 0x7E:
                if len(self.buf) >= self.max_line:
                    self.overflow += 1
                    continue
                self.buf.append(chr(b))
                if self.echo:
                    echo.append(0x2A if self.mask or self._secret_tail() else b)
            elif b == 0x0D or b == 0x0A:
                if echo:
                    out.append(("echo", bytes(echo)))
                    echo = []
                self._end(out)
                return out, i
            elif b == 0x08 or b == 0x7F:
                if self.buf and not self.overflow:
                    self.buf.pop()
                    if self.echo:
                        echo.extend(BS_ECHO)
            elif b == 0x1B:
                self.state = _ESC
                self.esc_len = 0
            elif b == 0x03 or b == 0x15:  # Ctrl-C, Ctrl-U
                if echo:
                    out.append(("echo", bytes(echo)))
                    echo = []
                if self.echo:
                    out.append(("echo", b"^C" + EOL if b == 0x03 else b"^U" + EOL))
                self.buf = []
                self.noise = 0
                self.overflow = 0
                out.append(("cancel", None))
                return out, i
            elif b in _HARMLESS:
                pass
            else:
                self._noise()
        if echo:
            out.append(("echo", bytes(echo)))
        return out, i
