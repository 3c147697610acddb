"""Serial over IP: the Megatec driver reads a UPS through an RFC 2217 server (pyserial's server
side bridging the emulator's pty), as it would through a serial device server in the field."""

import asyncio

from drivers.megatec import MegatecDriver
from hil.emulators.megatec import MegatecEmulator
from hil.rfc2217 import Rfc2217Server


def _device(url):
    return {"id": "ups", "driver": "megatec", "interval": 10, "timeout": 5,
            "serial": {"port": url, "baud": 2400, "bytesize": 8, "parity": "N", "stopbits": 1,
                       "read_timeout": 2.0, "gap_ms": 0, "dtr": True, "rts": False}}


def test_megatec_over_rfc2217_reads_the_emulator_and_survives_the_server_going_away():
    with MegatecEmulator() as emu:
        pty = emu.start()  # idempotent: the path of the running emulator
        with Rfc2217Server(pty) as server:
            drv = MegatecDriver(_device(server.url))

            async def polls():
                first = await drv.poll(8.0)
                second = await drv.poll(8.0)
                await drv.close()
                return first, second

            first, second = asyncio.run(polls())
            assert first.ok, first.error
            assert second.ok, second.error
            got = dict((m, v) for m, v, _ in first.samples)
            assert got["input.voltage"] == emu.state["input_voltage"]
            assert got["ups.status"] == emu.state["status"]
            assert server.clients >= 1 and server.error is None, server.error
            # The line settings crossed the network: the interface's DTR up and RTS down (some
            # UPS cables draw their power from these lines).
            assert ("dtr", True) in server.modem_log and ("rts", False) in server.modem_log
        # The server is gone: the next poll is stale with a reason, it does not raise or hang.
        drv = MegatecDriver(_device(server.url))
        res = asyncio.run(drv.poll(5.0))
        assert not res.ok and res.error
