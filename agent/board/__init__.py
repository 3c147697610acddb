"""Board adapters (MicroPython on the ESP32): machine.UART transports for serial devices and the
console. They import `machine` only when a port is opened, so the modules also import under
CPython and the WebAssembly port, where the tests install a scripted stand-in
(tests/portable/fake_machine.py)."""
