"""Hardware-in-the-loop rigs: device simulators and emulators, brokers, fault injection.

Everything here binds to loopback only and cleans up after itself."""
