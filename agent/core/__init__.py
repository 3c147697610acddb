# Portable core: every module here imports and runs under CPython 3.11+ and MicroPython 1.27+.
# Allowed imports: sys, time, math, json, struct, binascii, os (open/stat/rename/remove only),
# asyncio, and other modules of this package. No dataclasses, enum, abc, typing, pathlib.
