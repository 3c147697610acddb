"""Plain-text layout for the console (portable): aligned tables and key/value blocks that fit an
80-column terminal, with every character printable ASCII.

Invariants: every line returned is at most `width` characters; text from devices, configs or the
network passes through clean(), so a device name holding ESC or a newline cannot move the cursor
or fake a prompt on the technician's screen.
"""

import time

WIDTH = 80
UNLIMITED = 1 << 30  # for tables printed by the CLI, which never cut a cell


def clean(s):
    """str(s) with anything but printable ASCII replaced by "?"."""
    s = s if isinstance(s, str) else str(s)
    for ch in s:
        if not (" " <= ch <= "~"):
            return "".join(c if " " <= c <= "~" else "?" for c in s)
    return s


def cut(s, n):
    """s shortened to n characters, marking the cut with "~"."""
    if len(s) <= n:
        return s
    return s[: n - 1] + "~" if n > 1 else s[:n]


def value(v):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        s = "%.3f" % v
        return s.rstrip("0").rstrip(".") if "." in s else s
    return clean(v)


def ago(seconds):
    """A short age: "4s", "12m", "3h05m", "2d04h"; "-" for None."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 0:
        s = 0
    if s < 120:
        return "%ds" % s
    if s < 3600:
        return "%dm" % (s // 60)
    if s < 86400:
        return "%dh%02dm" % (s // 3600, (s % 3600) // 60)
    return "%dd%02dh" % (s // 86400, (s % 86400) // 3600)


def when(t):
    """UTC time "2024-11-02 14:05:09Z" for epoch seconds; "-" for None."""
    if t is None:
        return "-"
    y, mo, d, h, mi, s = time.gmtime(int(t))[:6]
    return "%04d-%02d-%02d %02d:%02d:%02dZ" % (y, mo, d, h, mi, s)


def wrap(text, width=WIDTH, indent=""):
    """Lines of at most width characters; later lines start with indent."""
    text = clean(text)
    out = []
    first = True
    while True:
        room = width if first else width - len(indent)
        if len(text) <= room:
            out.append(text if first else indent + text)
            return out
        cut_at = text.rfind(" ", 0, room + 1)
        if cut_at <= room // 2:
            cut_at = room
        out.append(text[:cut_at] if first else indent + text[:cut_at])
        text = text[cut_at:].lstrip(" ")
        first = False


def kv(pairs, width=WIDTH):
    """Aligned "key   value" lines; long values wrap under the value column."""
    keyw = 0
    for k, _ in pairs:
        if len(k) > keyw:
            keyw = len(k)
    out = []
    for k, v in pairs:
        head = k + " " * (keyw - len(k)) + "  "
        out.extend(wrap(head + clean(v), width, " " * len(head)))
    return out


def table(header, rows, width=WIDTH, squeeze=None):
    """An aligned table; when too wide, the column `squeeze` (default the last) is cut to fit."""
    rows = [[clean(c) for c in r] for r in rows]
    n = len(header)
    widths = [len(h) for h in header]
    for r in rows:
        for i in range(n):
            if len(r[i]) > widths[i]:
                widths[i] = len(r[i])
    total = sum(widths) + 2 * (n - 1)
    sq = n - 1 if squeeze is None else squeeze
    if total > width:
        widths[sq] = max(len(header[sq]), widths[sq] - (total - width))
        while sum(widths) + 2 * (n - 1) > width:  # still too wide: cut the widest column
            i = widths.index(max(widths))
            widths[i] -= 1
    out = []
    for r in [list(header)] + rows:
        cells = [cut(r[i], widths[i]) for i in range(n)]
        line = "  ".join(cells[i] + " " * (widths[i] - len(cells[i])) for i in range(n))
        out.append(line.rstrip())
    return out
