"""A serial-over-IP server (RFC 2217) on loopback, bridging one local serial port (an emulator's
pty) to TCP, so tests can prove the host transport's `rfc2217://host:port` URLs against a real
peer. The telnet and RFC 2217 negotiation is pyserial's own server side
(serial.rfc2217.PortManager).
"""

import socket
import threading

import serial
import serial.rfc2217


class PtyPort(serial.Serial):
    """A pyserial port on a pty, which has no modem lines: DTR, RTS and break are remembered
    (so a test can see what the client asked for) instead of set by ioctl, which a pty refuses;
    CTS, DSR, RI and CD read as asserted, as on a cable with the lines looped back."""

    modem_log = None  # [(line, level)] in the order the client set them

    def _update_dtr_state(self):
        self.modem_log.append(("dtr", self._dtr_state))

    def _update_rts_state(self):
        self.modem_log.append(("rts", self._rts_state))

    def _update_break_state(self):
        pass

    @property
    def cts(self):
        return True

    @property
    def dsr(self):
        return True

    @property
    def ri(self):
        return False

    @property
    def cd(self):
        return True


class _Writer:
    """PortManager answers telnet negotiation through `connection.write`."""

    def __init__(self, sock):
        self.sock = sock

    def write(self, data):
        self.sock.sendall(data)


class Rfc2217Server:
    def __init__(self, device_path, host="127.0.0.1"):
        self.device_path = device_path
        self.host = host
        self.port = None
        self._sock = None
        self._thread = None
        self._stop = threading.Event()
        self.clients = 0
        self.error = None  # what ended the last bridge, when it was not the client hanging up
        self.modem_log = []  # DTR/RTS levels the clients asked for, in order

    def start(self):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((self.host, 0))
        self._sock.listen(1)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="rfc2217", daemon=True)
        self._thread.start()
        return self

    @property
    def url(self):
        return "rfc2217://%s:%d" % (self.host, self.port)

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.clients += 1
            try:
                self._bridge(conn)
            finally:
                conn.close()

    def _bridge(self, conn):
        ser = PtyPort()
        ser.modem_log = self.modem_log
        ser.port = self.device_path
        ser.timeout = 0.05
        ser.open()
        conn.settimeout(0.05)
        manager = serial.rfc2217.PortManager(ser, _Writer(conn))
        try:
            while not self._stop.is_set():
                data = ser.read(ser.in_waiting or 1)
                if data:
                    conn.sendall(b"".join(manager.escape(data)))
                try:
                    net = conn.recv(1024)
                except socket.timeout:
                    continue
                if not net:
                    return  # the client hung up
                ser.write(b"".join(manager.filter(net)))
        except OSError as e:
            self.error = e
            return
        finally:
            ser.close()

    def stop(self):
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
