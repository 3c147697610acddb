"""IF-MIB as a data table (portable): interface state and traffic rates."""

_IF = "1.3.6.1.2.1.2.2.1."  # ifTable
_X = "1.3.6.1.2.1.31.1.1.1."  # ifXTable

COLUMNS = {
    "descr": _IF + "2",  # ifDescr, used when ifName is missing
    "oper": _IF + "8",  # ifOperStatus: the rows that define the interface list
    "in": _IF + "10",  # ifInOctets (Counter32), when the row has no 64-bit counters
    "out": _IF + "16",  # ifOutOctets (Counter32)
    "name": _X + "1",  # ifName
    "hc_in": _X + "6",  # ifHCInOctets (Counter64, v2c and v3 only)
    "hc_out": _X + "10",  # ifHCOutOctets (Counter64)
}

_ARGS = dict(COLUMNS)
_ARGS["walk"] = tuple(
    COLUMNS[k] for k in ("descr", "oper", "in", "out", "name", "hc_in", "hc_out")
)

PROFILE = {
    "name": "if-mib",
    "get": (),
    "walk": (),
    "derive": (("if_table", _ARGS),),
}
