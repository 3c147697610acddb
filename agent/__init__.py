"""Site agent: polls power, battery and router health at telecom field sites and reports over MQTT.

`agent.core` is the portable core (runs unchanged on CPython and MicroPython);
`agent.host` holds the CPython-only adapters (asyncio runner, paho, pyserial, pysnmp, CLI).
"""

__version__ = "0.1.0"
