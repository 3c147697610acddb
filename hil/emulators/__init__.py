"""Device emulators for tests and demos (host only): serial devices on pseudo-terminals.

hil/emulators/base.py holds the pty and fault machinery; each device family is one module with a
state model and a CLI (`python -m hil.emulators.megatec` prints the pty path and runs).
"""
