"""Hardware-in-the-loop rigs: device simulators and emulators, brokers, fault injection.

Everything here binds to loopback only, or inside network namespaces a rig made for itself
(hil/drill/netlab.py), and cleans up after itself."""
