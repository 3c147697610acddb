"""Schema machinery for the site config: field specs as data, one checker collecting every error.

A table schema is a tuple of (key, spec) pairs; a spec is a plain dict made by `field()`:
    kind      "str" | "int" | "num" | "bool" | "table" | "tables" | "secret" | "free" | "pair"
    required  the key must be present (no default is filled)
    default   filled in when the key is absent (MISSING = nothing is filled)
    choices   tuple of allowed values (compared by type and value: 2 is not "2")
    min, max  inclusive bounds; gt, lt exclusive bounds (numbers only). Every number key has a
              lower and an upper bound (a test holds the tables to it), and nan or inf is out of
              every range: TOML and JSON can write both, and no setting means anything with them.
    minlen, maxlen, chars   string length bounds and allowed characters
    check     fn(value) -> None, or the text after "expected" for one-off rules (formats)
    suggest   fn() -> candidate strings for a "did you mean" hint when `check` fails
    fill      ("table" only) an absent table is checked as {} so its defaults are filled
    fields    the sub-schema of a "table", or of every element of "tables"
Invariant: the checker never raises on bad input; each problem becomes one message
"<source>: <key path>: <what was expected>, got <what was found>" in `Checker.errors`, and checking
continues, so one run reports every problem. Cross-field rules live in config/validate.py and
config/devices.py.
Portable: CPython and MicroPython (no dataclasses, typing, re).
"""

import json

MISSING = object()  # "no default": distinct from every value a TOML or JSON file can hold

ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"
UPPER_SNAKE = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"

_KIND_WORDS = {
    "str": "a string",
    "int": "an integer",
    "num": "a number",
    "bool": "true or false",
    "table": "a table",
    "tables": "an array of tables",
    "secret": 'a string or a table { env = "NAME" } or { file = "/path" }',
    "free": "a table",
    "pair": 'an array of two strings ["metric", "value"]',
}


def field(kind, required=False, default=MISSING, **checks):
    # Only the keys that say something are stored: about 90 specs live in RAM on the board.
    spec = checks
    spec["kind"] = kind
    if required:
        spec["required"] = True
    if default is not MISSING:
        spec["default"] = default
    return spec


def show(value):
    """A value as the user wrote it in TOML: strings quoted, true/false, tables/arrays named."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, (int, float)):
        return repr(value)
    return str(value)  # dates and times from tomllib


def choice_words(choices):
    """("1", "2c", "3") -> '"1", "2c" or "3"'."""
    words = [show(c) for c in choices]
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def path_str(path):
    """("devices", 2, "snmp", "version") -> "devices[2].snmp.version"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += "[" + str(part) + "]"
        elif out:
            out += "." + part
        else:
            out = part
    return out


def distance(a, b):
    """Edit distance counting a swap of two neighbours as one edit (optimal string alignment),
    so "snpm" is one typo away from "snmp". Small strings only: key and enum names."""
    before, prev = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], before[j - 2] + 1)
        before, prev = prev, cur
    return prev[len(b)]


def closest(word, candidates):
    """The candidate nearest to `word` if it is a plausible typo (at most 2 edits, or a quarter
    of a long word, and under half the word), else None. Ties go to the first candidate."""
    limit = max(2, len(word) // 4)
    best, best_d = None, limit + 1
    for cand in candidates:
        d = distance(word.lower(), cand.lower())
        if d < best_d and d * 2 < max(len(word), 2):
            best, best_d = cand, d
    return best


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _bound(x):
    """A range's end as a person reads it: 86400, 0.5, -90, 1e+15 (not 1000000000000000.0)."""
    if x == int(x) and abs(x) < 1e7:
        return str(int(x))
    return "%g" % x


def _range_words(spec, noun):
    lo, hi, gt, lt = spec.get("min"), spec.get("max"), spec.get("gt"), spec.get("lt")
    if lo is not None and hi is not None:
        return noun + " from " + _bound(lo) + " to " + _bound(hi)
    parts = []
    if lo is not None:
        parts.append(">= " + _bound(lo))
    if gt is not None:
        parts.append("> " + _bound(gt))
    if hi is not None:
        parts.append("<= " + _bound(hi))
    if lt is not None:
        parts.append("< " + _bound(lt))
    if not parts:
        return noun
    return noun + " " + " and ".join(parts)


class Checker:
    """Walks data against a schema, fills defaults, resolves secrets, collects messages.

    getenv(name) -> str or None and read_file(path) -> str are injected so this stays portable;
    `secrets` lists the key paths (tuples) whose values are secrets, `literal_secrets` those
    written in clear in the file."""

    def __init__(self, source, getenv, read_file):
        self.source = source
        self.getenv = getenv
        self.read_file = read_file
        self.errors = []
        self.paths = []  # the key path of each message in `errors`, for sorted_errors()
        self.warnings = []
        self.secrets = []
        self.literal_secrets = []

    def error(self, path, text):
        self.errors.append(self.source + ": " + path_str(path) + ": " + text)
        self.paths.append(path)

    def sorted_errors(self, order):
        """The messages in the order of the file's tables: by the top-level key's place in
        `order` (unknown keys first), then by array index; stable, so messages about one key
        keep the order in which the checks ran."""
        ranked = []
        for n, (path, msg) in enumerate(zip(self.paths, self.errors)):
            top = order.index(path[0]) if path and path[0] in order else -1
            ranked.append(([top] + [p for p in path if isinstance(p, int)], n, msg))
        ranked.sort()
        return [msg for _, _, msg in ranked]

    def warn(self, path, text):
        self.warnings.append(self.source + ": " + path_str(path) + ": " + text)

    def expected(self, path, what, value):
        self.error(path, "expected " + what + ", got " + show(value))

    # -- tables -----------------------------------------------------------------------------

    def table(self, data, fields, path, skip=()):
        """Check a table; return a new dict with defaults filled. Keys in `skip` are copied
        unchecked (the caller validates them: driver sections)."""
        out = {}
        if not isinstance(data, dict):
            self.expected(path, "a table", data)
            return out
        names = [k for k, _ in fields]
        for key in data:
            if key in skip:
                out[key] = data[key]
            elif key not in names:
                hint = closest(key, names + list(skip))
                text = "unknown key"
                if hint is not None:
                    text += ' (did you mean "' + hint + '"?)'
                self.error(path + (key,), text)
        for key, spec in fields:
            if key in skip:
                continue
            if key in data:
                value = self.value(data[key], spec, path + (key,))
                if value is not MISSING:
                    out[key] = value
            elif spec.get("required"):
                self.error(path + (key,), "missing required key (" + self.want(spec) + ")")
            elif spec.get("fill"):  # an absent table counts as an empty one: defaults inside
                out[key] = self.table({}, spec["fields"], path + (key,))
            elif "default" in spec:
                d = spec["default"]
                out[key] = list(d) if isinstance(d, list) else d
        return out

    def want(self, spec):
        if "choices" in spec:
            return "expected " + choice_words(spec["choices"])
        return "expected " + _KIND_WORDS[spec["kind"]]

    # -- values -----------------------------------------------------------------------------

    def value(self, v, spec, path):
        """Check one value; return it (converted where noted) or MISSING after an error."""
        kind = spec["kind"]
        if kind == "table":
            return self.table(v, spec["fields"], path)
        if kind == "tables":
            if not isinstance(v, list):
                self.expected(path, "an array of tables ([[" + path_str(path) + "]])", v)
                return MISSING
            return [self.table(item, spec["fields"], path + (i,)) for i, item in enumerate(v)]
        if kind == "free":
            if not isinstance(v, dict):
                self.expected(path, "a table", v)
                return MISSING
            return v
        if kind == "secret":
            return self.secret(v, path)
        if kind == "strs":  # an array of non-empty strings
            if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
                self.expected(path, "an array of non-empty strings", v)
                return MISSING
            return list(v)
        if kind == "pair":  # [metric, value]: an alarm rule's guard
            if not isinstance(v, list) or len(v) != 2 or not all(isinstance(x, str) for x in v):
                self.expected(path, 'an array of two strings ["metric", "value"]', v)
                return MISSING
            return list(v)
        if "choices" in spec:
            if _same_type(v, spec["choices"]) is MISSING:
                text = "expected " + choice_words(spec["choices"]) + ", got " + show(v)
                if isinstance(v, str):
                    hint = closest(v, [c for c in spec["choices"] if isinstance(c, str)])
                    if hint is not None:
                        text += ' (did you mean "' + hint + '"?)'
                self.error(path, text)
                return MISSING
            return v
        if kind == "bool":
            if not isinstance(v, bool):
                self.expected(path, "true or false", v)
                return MISSING
            return v
        if kind == "str":
            return self.string(v, spec, path)
        if kind == "int" or kind == "num":
            ok = is_int(v) if kind == "int" else is_num(v)
            noun = "an integer" if kind == "int" else "a number"
            if not ok:
                self.expected(path, _range_words(spec, noun), v)
                return MISSING
            if not _in_range(v, spec):
                self.expected(path, _range_words(spec, noun), v)
                return MISSING
            return float(v) if kind == "num" and spec.get("float") else v
        raise ValueError("schema: unknown kind " + kind)  # a bug in the schema, not in the input

    def string(self, v, spec, path):
        if not isinstance(v, str):
            self.expected(path, "a string", v)
            return MISSING
        lo, hi = spec.get("minlen"), spec.get("maxlen")
        if (lo is not None and len(v) < lo) or (hi is not None and len(v) > hi):
            if lo is not None and hi is not None:
                words = "a string of " + str(lo) + " to " + str(hi) + " characters"
            elif lo is not None:
                words = "a string of at least " + str(lo) + " character" + ("s" if lo > 1 else "")
            else:
                words = "a string of at most " + str(hi) + " characters"
            self.expected(path, words, v)
            return MISSING
        chars = spec.get("chars")
        if chars is not None:
            for c in v:
                if c not in chars:
                    self.expected(path, spec.get("chars_words", "allowed characters"), v)
                    return MISSING
        check = spec.get("check")
        if check is not None:
            text = check(v)
            if text is not None:
                text = "expected " + text + ", got " + show(v)
                suggest = spec.get("suggest")
                hint = closest(v, suggest()) if suggest is not None else None
                if hint is not None:
                    text += ' (did you mean "' + hint + '"?)'
                self.error(path, text)
                return MISSING
        return v

    def secret(self, v, path):
        """A secret: a literal string, { env = "NAME" } or { file = "/path" }. Returns the
        resolved string; records the path for redaction."""
        if isinstance(v, str):
            self.secrets.append(path)
            self.literal_secrets.append(path)
            return v
        if not isinstance(v, dict) or len(v) != 1 or not ("env" in v or "file" in v):
            if isinstance(v, dict) and v:
                for key in v:
                    if key not in ("env", "file"):
                        hint = closest(key, ("env", "file"))
                        text = 'unknown key in a secret (expected "env" or "file")'
                        if hint is not None:
                            text = 'unknown key (did you mean "' + hint + '"?)'
                        self.error(path + (key,), text)
                        return MISSING
                self.error(path, 'expected exactly one of "env" or "file", got both')
                return MISSING
            self.expected(path, _KIND_WORDS["secret"], v)
            return MISSING
        if "env" in v:
            name = v["env"]
            if not isinstance(name, str) or not name:
                self.expected(path + ("env",), "an environment variable name", name)
                return MISSING
            got = self.getenv(name) if self.getenv is not None else None
            if got is None:
                self.error(path, "environment variable " + name + " is not set")
                return MISSING
            self.secrets.append(path)
            return got
        name = v["file"]
        if not isinstance(name, str) or not name:
            self.expected(path + ("file",), "a file path", name)
            return MISSING
        try:
            got = self.read_file(name)
        except Exception as e:  # noqa: BLE001 - OSError, UnicodeError, whatever the reader raises
            self.error(path, "cannot read secret file " + name + ": " + _reason(e))
            return MISSING
        # A file written by `echo secret > f` ends with a newline that is not part of the secret.
        while got and got[-1] in "\r\n":
            got = got[:-1]
        if not got:
            self.error(path, "secret file " + name + " is empty")
            return MISSING
        self.secrets.append(path)
        return got


def _reason(e):
    # OSError(errno, text): CPython has .strerror, MicroPython only .args.
    args = getattr(e, "args", ())
    if len(args) == 2 and isinstance(args[1], str):
        return args[1]
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def _same_type(v, choices):
    # The choice equal to v, so "2 == 2.0" or "True == 1" does not let a wrong type through.
    for c in choices:
        if c == v and type(c) is type(v):
            return c
    return MISSING


def is_finite(v):
    """False for nan, inf and -inf (nan is the one value not equal to itself)."""
    return v == v and v != _INF and v != -_INF


_INF = float("inf")


def _in_range(v, spec):
    if not is_finite(v):
        return False
    lo, hi, gt, lt = spec.get("min"), spec.get("max"), spec.get("gt"), spec.get("lt")
    if lo is not None and v < lo:
        return False
    if hi is not None and v > hi:
        return False
    if gt is not None and v <= gt:
        return False
    return lt is None or v < lt
