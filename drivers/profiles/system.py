"""SNMPv2-MIB system group as a data table (portable): uptime and reboot detection."""

SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"

PROFILE = {
    "name": "system",
    "get": (),
    "walk": (),
    # sysUpTime is TimeTicks (0.01 s); it wraps after 497 days, which reads as one reboot.
    "derive": (("uptime", {"get": (SYS_UPTIME,), "oid": SYS_UPTIME}),),
}
