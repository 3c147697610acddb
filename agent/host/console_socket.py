"""The console on a Unix socket in the data directory (host), and `site-agent console`, the client
that attaches a technician's terminal to it (for those who come in over SSH).

    srv = SocketConsole(os.path.join(data_dir, "console.sock"), make_console, log)
    await srv.start(); ...; await srv.close()
    attach(path)              # the client: raw terminal <-> socket until Ctrl-] or the end

The socket is mode 0600 in the agent's data directory: only the agent's user (and root) can
connect, and the same PIN login as on the serial line is still asked. Each connection is one
session with the same commands; output goes through a bounded buffer (dropped past
`out_limit`, with a note), so a client that stops reading cannot stall the agent. At most
`max_clients` connections at once; more are told so and closed.
"""

import asyncio
import os
import select
import socket
import stat
import sys

from agent.core.console.output import DROP_NOTE

SOCKET_NAME = "console.sock"
DETACH = 0x1D  # Ctrl-]


class _StreamOut:
    def __init__(self, writer, limit):
        self.writer = writer
        self.limit = limit
        self.dropped = 0

    def write(self, data):
        if self.writer.is_closing():
            return
        if self.writer.transport.get_write_buffer_size() + len(data) > self.limit:
            self.dropped += len(data)
            return
        if self.dropped:
            data = (DROP_NOTE % self.dropped).encode() + data
            self.dropped = 0
        self.writer.write(data)


class SocketConsole:
    def __init__(self, path, make_console, log, max_clients=4, out_limit=65536, tick_s=1.0):
        """make_console(write, where) -> agent.core.console.session.Console."""
        self.path = path
        self.make_console = make_console
        self.log = log
        self.max_clients = max_clients
        self.out_limit = out_limit
        self.tick_s = tick_s
        self.server = None
        self.clients = set()
        self.served = 0

    async def start(self):
        self._remove_stale()
        old = os.umask(0o177)  # the socket is created 0600: no window where others may connect
        try:
            self.server = await asyncio.start_unix_server(self._client, path=self.path)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self.log.info("console", "socket console listening", path=self.path)
        return self

    def _remove_stale(self):
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError("%s exists and is not a socket; not removing it" % self.path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.path)
        except OSError:
            os.unlink(self.path)  # left by an agent that died: nobody listens
            return
        finally:
            s.close()
        raise OSError("%s: another agent is listening on this console socket" % self.path)

    async def _client(self, reader, writer):
        if len(self.clients) >= self.max_clients:
            writer.write(b"console: too many sessions open; try again later\r\n")
            writer.close()
            return
        self.served += 1
        out = _StreamOut(writer, self.out_limit)
        con = self.make_console(out.write, "socket")
        task = asyncio.current_task()
        self.clients.add(task)
        ticker = None
        try:
            con.start()
            ticker = asyncio.create_task(self._tick(con))
            while not con.closed:
                # A plain await (not asyncio.wait_for, which on 3.11 can lose a cancellation).
                data = await reader.read(1024)
                if not data:
                    break
                await con.feed(data)
            if con.closed:
                try:
                    await asyncio.wait_for(writer.drain(), 2.0)
                except (TimeoutError, OSError):
                    pass
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            # The agent is stopping. Ending quietly here (the handler's own task) keeps asyncio
            # from logging the cancellation as an error in its stream callback.
            pass
        finally:
            if ticker is not None:
                ticker.cancel()
            con.hangup("socket closed")
            self.clients.discard(task)
            writer.close()

    async def _tick(self, con):
        while True:
            await asyncio.sleep(self.tick_s)
            con.tick()

    async def close(self):
        if self.server is not None:
            self.server.close()
            for t in list(self.clients):
                t.cancel()
            await asyncio.gather(*self.clients, return_exceptions=True)
            await self.server.wait_closed()
            self.server = None
        try:
            os.unlink(self.path)
        except OSError:
            pass


def attach(path, stdin=None, stdout=None):
    """Relay a terminal to the console socket until the agent closes it (exit) or the user types
    Ctrl-]. The terminal is put in raw mode (the console does echo and line editing) and always
    restored. Returns an exit code: 0 ended normally, 1 cannot connect."""
    stdin = stdin if stdin is not None else sys.stdin
    stdout = stdout if stdout is not None else sys.stdout
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        sys.stderr.write("site-agent console: cannot connect to %s: %s\n(is the agent running "
                         "with [console] socket = true, and are you its user?)\n"
                         % (path, e.strerror or e))  # fmt: skip
        s.close()
        return 1
    ifd = stdin.fileno()
    ofd = stdout.fileno()
    saved = None
    if os.isatty(ifd):
        import termios
        import tty

        saved = termios.tcgetattr(ifd)
        sys.stderr.write("connected to %s; Ctrl-] leaves\r\n" % path)
        tty.setraw(ifd)
    try:
        open_in = True
        while True:
            r, _, _ = select.select([s, ifd] if open_in else [s], [], [])
            if s in r:
                data = s.recv(4096)
                if not data:
                    break
                os.write(ofd, data)
            if ifd in r:
                data = os.read(ifd, 1024)
                if not data:
                    open_in = False  # input ended (a pipe): keep reading the agent's answers
                    s.shutdown(socket.SHUT_WR)
                    continue
                if saved is not None and DETACH in data:
                    data = data[: data.index(DETACH)]
                    if data:
                        s.sendall(data)
                    break
                s.sendall(data)
    except OSError:
        pass
    finally:
        if saved is not None:
            import termios

            termios.tcsetattr(ifd, termios.TCSADRAIN, saved)
            sys.stderr.write("\r\n")
        s.close()
    return 0
