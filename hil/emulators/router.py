"""A site router's IF-MIB on the SNMP agent: interfaces whose oper status a test or a rig sets
(host only). A router has no physics to model; its interfaces are up or down as the links are.

    rtr = Router([(1, "wan0"), (2, "sat0"), (3, "eth3")])
    with rtr:                  # SnmpAgent on 127.0.0.1, rtr.port
        rtr.set_oper("wan0", False)
        rtr.set_fault("silence")

Served per interface i: ifDescr (.2.2.1.2.i), ifOperStatus (.2.2.1.8.i: 1 up, 2 down), ifName
(.31.1.1.1.1.i): what drivers/profiles/if_mib.py reads.
"""

from drivers.proto import ber
from hil.emulators.snmp_agent import SnmpAgent, SnmpDevice

IF_UP, IF_DOWN = 1, 2


class Router(SnmpDevice):
    def __init__(self, interfaces=((1, "wan0"), (2, "sat0")), community="public"):
        self.interfaces = list(interfaces)
        self.oper = {name: IF_UP for _i, name in self.interfaces}
        self.agent = SnmpAgent(self.table, community=community)

    def set_oper(self, name, up):
        self.oper[name] = IF_UP if up else IF_DOWN

    def table(self):
        t = {}
        for i, name in self.interfaces:
            t["1.3.6.1.2.1.2.2.1.2.%d" % i] = (ber.OCTET_STRING, name.encode())
            t["1.3.6.1.2.1.2.2.1.8.%d" % i] = (ber.INTEGER, self.oper[name])
            t["1.3.6.1.2.1.31.1.1.1.1.%d" % i] = (ber.OCTET_STRING, name.encode())
        return t
