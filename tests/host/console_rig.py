"""An agent process with the console wired as proposed for agent/host/runner.py (for the console
tests): `python tests/host/console_rig.py site.toml`.

It polls, stores and (with [uplink]) sends exactly as `site-agent run`, and serves the console on
[console] port and the Unix socket. `reboot` prints "RESTART REQUESTED" on stderr and stops the
process with exit code 3 (the runner would let systemd or an exec start it again). Every log line
goes to stderr, so a test can watch polls go on while the console is abused.
"""

import asyncio
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from agent.core.log import DEBUG, Log
from agent.host.configfile import load
from agent.host.console_host import make_facade, start_consoles
from agent.host.runner import make_loop, open_queue


async def main(path):
    import faulthandler

    faulthandler.register(signal.SIGUSR1)
    cfg = load(path)
    log = Log(level=DEBUG if os.environ.get("RIG_DEBUG") else 20,
              write=lambda line: print(line, file=sys.stderr, flush=True))  # fmt: skip
    stop = asyncio.Event()
    restart = []
    aloop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        aloop.add_signal_handler(sig, stop.set)

    def dump():
        for t in asyncio.all_tasks():
            t.print_stack(file=sys.stderr)

    aloop.add_signal_handler(signal.SIGUSR2, dump)
    queue = open_queue(cfg, log)
    loop = make_loop(cfg, queue, log)
    tasks = [asyncio.create_task(loop.run())]
    uplink = None
    if cfg.uplink:
        from agent.host.uplink import MqttUplink

        uplink = MqttUplink(cfg.uplink, cfg.site["id"], queue, log)
        loop.listeners.append(uplink.notify)

    def do_restart():
        print("RESTART REQUESTED", file=sys.stderr, flush=True)
        restart.append(1)
        aloop.call_later(0.2, stop.set)  # let the console say goodbye first

    facade = make_facade(cfg, loop, queue, uplink, log, restart=do_restart, config_path=path)
    if uplink is not None:
        uplink.attach(facade)
        tasks.append(asyncio.create_task(uplink.run()))
    service = await start_consoles(cfg, facade, log)
    print("RIG READY", file=sys.stderr, flush=True)
    await stop.wait()
    if service is not None:
        await service.close()
    loop.stop()
    await asyncio.gather(tasks[0], return_exceptions=True)
    if uplink is not None:  # as run_agent does: let the uplink send what the last commit stored
        uplink.notify()
        await asyncio.sleep(0.2)
    for t in tasks[1:]:
        t.cancel()
    code = 3 if restart else 0
    if tasks[1:]:
        _, pending = await asyncio.wait(tasks[1:], timeout=5)
        if pending:
            # MqttUplink.run() can miss its cancellation (asyncio.wait_for on 3.11); reported.
            print("UPLINK DID NOT STOP", file=sys.stderr, flush=True)
            queue.close()
            os._exit(code)
    queue.close()
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
