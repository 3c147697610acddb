"""CPython-only adapters: asyncio runner, paho-mqtt uplink, pyserial and pysnmp transports, CLI."""
