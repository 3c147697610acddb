# Names agent/board/udp.py imports, for the WebAssembly port (which has no socket module): the
# heap bench never opens a socket (its SNMP peer is scripted).
AF_INET = 2
AF_INET6 = 10
SOCK_STREAM = 1
SOCK_DGRAM = 2


def getaddrinfo(*a):
    raise OSError(-2)
