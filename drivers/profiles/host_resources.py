"""HOST-RESOURCES-MIB as a data table (portable): CPU load and RAM use of a router or host."""

_HR = "1.3.6.1.2.1.25."
_ST = _HR + "2.3.1."  # hrStorageEntry

HR_STORAGE_RAM = "1.3.6.1.2.1.25.2.1.2"

_MEMORY = {
    "type": _ST + "2",
    "descr": _ST + "3",
    "units": _ST + "4",
    "size": _ST + "5",
    "used": _ST + "6",
    "ram_type": HR_STORAGE_RAM,
    # net-snmp's Linux rows for reclaimable RAM (see derive._hr_memory)
    "reclaimable": ("Memory buffers", "Cached memory"),
}
_MEMORY["walk"] = tuple(_MEMORY[k] for k in ("type", "descr", "units", "size", "used"))

PROFILE = {
    "name": "host-resources",
    "get": (),
    "walk": (
        # hrProcessorLoad: % over the last minute, one row per core; the mean is the router's load.
        (_HR + "3.3.1.2", "router.cpu", "num", 1, "mean", None),
    ),
    "derive": (("hr_memory", _MEMORY),),
}
