"""Protocol parsers (portable): bytes in, values or a typed ParseError out, no I/O.

Each module builds the requests of one protocol and parses its replies into samples
(metric, value, unit) with names from agent/core/registry.py. They import and run unchanged under
CPython and MicroPython, so the same parser serves the Pi (pyserial) and the ESP32 (machine.UART).
"""
