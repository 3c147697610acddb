"""Issue 16: SNMP in the field. Retries that retry, profiles that re-detect, devices the agent
cannot identify, rPDU2, values of the wrong type, vendor views, the cause of a silence, names
that say what the device is. Every v1/v2c test runs both drivers (pysnmp and snmp-lite) against
the same peer: they must behave the same. Peers: snmpsim with snmpsim-data recordings, a dynamic
agent (hil/emulators/snmp_agent.py) for devices that change, a silent sink and a lossy proxy
(hil/udp_sink.py). Expected values come from the recordings."""

import asyncio
import os
import subprocess
import sys

import pytest

from agent.core import registry
from agent.core.errors import ConfigError
from drivers.proto import ber
from drivers.snmp import SnmpDriver
from hil.emulators.snmp_agent import SnmpAgent
from hil.snmpsim import free_udp_port
from hil.udp_sink import LossyProxy, UdpSink

from snmp_support import (
    DRIVERS,
    EATON,
    EMERSON,
    HUAWEI,
    PDU2_ONLY,
    SANTAK,
    UPS,
    as_dict,
    check_registry,
    column,
    device,
    num,
    poll,
    poll_results,
    sim_fixture,
    val,
)

HW = "1.3.6.1.4.1.2011.6.174.1."
P2 = "1.3.6.1.4.1.318.1.1.26."
NETSURE = "1.3.6.1.4.1.6302.2.1.2."
V3 = {"user": "agent", "auth_key": "auth-key-2024", "priv_key": "priv-key-2024"}
sim = sim_fixture([EATON, HUAWEI, SANTAK, EMERSON, PDU2_ONLY], v3_user=V3)


def remarks(results):
    return [text for r in results for _level, text in r.remarks]


def warnings(results):
    return [text for r in results for level, text in r.remarks if level == "warning"]


# --- 1. retries retry, within the poll's budget -----------------------------------------------
@pytest.mark.parametrize("cls", DRIVERS)
@pytest.mark.parametrize("retries", [0, 3])
def test_retries_send_that_many_tries_within_the_budget(cls, retries):
    with UdpSink() as sink:
        dev = {"id": "d", "timeout": 4.0,
               "snmp": {"host": "127.0.0.1", "port": sink.port, "community": "c",
                        "retries": retries, "profile": "ups-mib"}}  # fmt: skip
        result = asyncio.run(cls(dev).poll(4.0))
        # The probe byte the pysnmp driver sends after its tries is not SNMP: sink.other.
        assert sink.requests == retries + 1, sink.request_ids
    tries = retries + 1
    assert result.error == "snmp 127.0.0.1:%d: no answer to %d %s of %.3gs (wrong community or " \
        "agent down)" % (sink.port, tries, "try" if tries == 1 else "tries", 3.6 / tries)
    assert result.duration < 4.0  # our verdict, not the budget's "no answer within 4s"
    # Each try waited its share before the next: 0.9 s, less when the first went out late (a
    # new pysnmp engine spends up to a second setting up before its first request).
    gaps = [sink.times[i + 1] - sink.times[i] for i in range(len(sink.times) - 1)]
    assert all(g > 0.3 for g in gaps), gaps


@pytest.mark.parametrize("cls", DRIVERS)
def test_one_lost_datagram_per_request_costs_a_retry_not_the_poll(sim, cls):
    with LossyProxy(("127.0.0.1", sim.port)) as proxy:  # every other datagram is lost
        dev = device(sim, EATON, timeout=4, retries=1, profile="ups-mib")
        dev["snmp"]["port"] = proxy.port
        driver, results = poll_results(cls, dev, budget=4)
        assert results[0].ok, results[0].error
        assert proxy.dropped == driver.requests >= 2  # every request lost its first try
        assert proxy.requests == 2 * driver.requests
        s = as_dict(results[0])
        assert val(s, "battery.charge") == num(sim.expected(EATON), UPS + "2.4.0")
        dev["snmp"]["retries"] = 0  # no retry: the lost datagram makes the device stale
        _, results = poll_results(cls, dev, budget=4)
        assert not results[0].ok and "no answer to 1 try" in results[0].error


# --- 2. a wrong SNMPv3 privacy key is called that ---------------------------------------------
def test_wrong_v3_privacy_key_is_reported_as_such(sim):
    v3 = dict(version="3", user=V3["user"], auth_protocol="SHA", auth_key=V3["auth_key"],
              priv_protocol="AES", priv_key="not-the-priv-key", security_level="authPriv",
              context=EATON, retries=0)  # fmt: skip
    _, results = poll_results(SnmpDriver, device(sim, None, **v3), budget=5)
    assert results[0].error == (
        "snmp 127.0.0.1:%d: SNMPv3 authorization error: wrong privacy key or protocol "
        "(usmStatsDecryptionErrors)" % sim.port
    )
    assert "cryptography" not in results[0].error


# --- 3. profile "auto" re-detects -----------------------------------------------------------
IF_NUMBER = "1.3.6.1.2.1.2.1.0"
UPTIME = "1.3.6.1.2.1.1.3.0"


class Card:
    """A UPS network card for SnmpAgent: MIB-II always, and the device MIBs in `mibs`, which a
    test changes between polls (booting, a firmware upgrade, a subagent that died)."""

    def __init__(self, *mibs):
        self.mibs = set(mibs)
        self.uptime = 360000  # TimeTicks: one hour

    def table(self):
        t = {
            "1.3.6.1.2.1.1.1.0": (ber.OCTET_STRING, b"NetAgent card v2"),
            "1.3.6.1.2.1.1.2.0": (ber.OID, "1.3.6.1.4.1.99999.1"),
            UPTIME: (ber.TIMETICKS, self.uptime),
            IF_NUMBER: (ber.INTEGER, 1),
            "1.3.6.1.2.1.2.2.1.2.1": (ber.OCTET_STRING, b"eth0"),
            "1.3.6.1.2.1.2.2.1.8.1": (ber.INTEGER, 1),
        }
        if "ups-mib" in self.mibs:
            t[UPS + "2.1.0"] = (ber.INTEGER, 2)
            t[UPS + "2.4.0"] = (ber.INTEGER, 87)
            t[UPS + "4.1.0"] = (ber.INTEGER, 3)
        if "huawei" in self.mibs:
            t[HW + "2.100.1.2.1"] = (ber.OCTET_STRING, b"UPS5000-E")
            t[HW + "6.100.1.3.1"] = (ber.GAUGE32, 99)
        if "netsure" in self.mibs:
            t[NETSURE + "1.0"] = (ber.INTEGER, 2)
            t[NETSURE + "2.0"] = (ber.INTEGER, 53480)
        return t


def card_polls(cls, card, steps, retries=0):
    """Poll `card` once per step with one driver object; a step is fn(card, agent) run before
    the poll. Returns (driver, [PollResult])."""
    with SnmpAgent(card.table) as agent:
        dev = {"id": "ups", "timeout": 1.5,
               "snmp": {"host": "127.0.0.1", "port": agent.port, "retries": retries}}  # fmt: skip

        async def go():
            driver = cls(dev)
            out = []
            try:
                for step in steps:
                    step(card, agent)
                    card.uptime += 3000
                    out.append(await driver.poll(1.5))
            finally:
                await driver.close()
            return driver, out

        return asyncio.run(go())


def nothing(card, agent):
    pass


def add(*mibs):
    def step(card, agent):
        card.mibs.update(mibs)
        agent.set_fault(None)

    return step


@pytest.mark.parametrize("cls", DRIVERS)
def test_a_card_that_boots_mib2_first_is_picked_up_when_its_ups_mib_answers(cls):
    driver, results = card_polls(cls, Card(), [nothing, nothing, add("ups-mib")])
    first, _second, third = (as_dict(r) for r in results)
    assert val(first, "device.profile") == "router" and val(first, "device.identified") is False
    assert "device.profile" not in _second  # identification goes up once, not every poll
    assert driver.chosen == "ups-mib"
    assert val(third, "battery.charge") == 87 and val(third, "device.identified") is True
    assert val(third, "device.profile") == "ups-mib"
    assert "profile router -> ups-mib: upsBatteryStatus answers now" in " ".join(
        warnings(results)
    )


@pytest.mark.parametrize("cls", DRIVERS)
def test_a_reboot_re_detects(cls):
    def reboot_with_new_firmware(card, agent):
        card.uptime = 1000  # sysUpTime goes back
        card.mibs.add("huawei")

    driver, results = card_polls(cls, Card("ups-mib"), [nothing, reboot_with_new_firmware])
    assert driver.chosen == "huawei-ups"
    assert val(as_dict(results[1]), "battery.charge") == 99  # hwUpsBatteryCapacityLeft
    assert "profile ups-mib -> huawei-ups: the device rebooted (sysUpTime went back from " \
        "3630s to 40s)" in " ".join(warnings(results))  # fmt: skip

    def reboot(card, agent):
        card.uptime = 1000

    driver, results = card_polls(cls, Card("ups-mib"), [nothing, reboot])
    assert driver.chosen == "ups-mib" and results[1].ok
    assert "profile ups-mib kept after re-detection: the device rebooted" in " ".join(
        remarks(results)
    )


@pytest.mark.parametrize("cls", DRIVERS)
def test_back_after_no_answer_re_detects(cls):
    def silent(card, agent):
        agent.set_fault("silence")

    driver, results = card_polls(cls, Card("ups-mib"), [nothing, silent, add("huawei")])
    assert [r.ok for r in results] == [True, False, True]
    assert driver.chosen == "huawei-ups"
    assert "profile ups-mib -> huawei-ups: back after no answer" in " ".join(warnings(results))


@pytest.mark.parametrize("cls", DRIVERS)
def test_a_profile_that_reads_nothing_re_detects(cls):
    def swap(card, agent):
        card.mibs = {"netsure"}

    driver, results = card_polls(cls, Card("ups-mib"), [nothing, swap])
    assert results[1].ok, results[1].error
    assert driver.chosen == "netsure" and val(as_dict(results[1]), "dc.status") == "normal"
    assert "profile ups-mib -> netsure: profile ups-mib read nothing" in " ".join(
        warnings(results)
    )


# --- 4. a device the agent cannot identify is said so ----------------------------------------
@pytest.mark.parametrize("cls", DRIVERS)
def test_unknown_vendor_mib_is_not_identified(sim, cls):
    """Emerson UHA1R-0030L: its only power MIB is enterprise 13400, which the agent lacks."""
    rec = sim.expected(EMERSON)
    _, results = poll_results(cls, device(sim, EMERSON))
    assert results[0].ok, results[0].error
    s = as_dict(results[0])
    assert val(s, "device.identified") is False and val(s, "device.profile") == "router"
    assert val(s, "device.object_id") == rec["1.3.6.1.2.1.1.2.0"][1] == "1.3.6.1.4.1.13400.2.1"
    assert val(s, "device.description") == rec["1.3.6.1.2.1.1.1.0"][1]
    assert "device.uptime" in s and "router.uptime" not in s  # named for what it is
    [text] = warnings(results)
    assert "no supported device detected: none of HUAWEI-UPS-MIB, PowerNet" in text
    assert "sysObjectID 1.3.6.1.4.1.13400.2.1, sysDescr 'UPS Web/SNMP Agent, Emerson" in text
    check_registry(s)


@pytest.mark.parametrize("cls", DRIVERS)
def test_a_wrong_explicit_profile_is_not_ok(sim, cls):
    _, results = poll_results(cls, device(sim, EATON, profile="eltek"))
    assert not results[0].ok and results[0].samples == []
    assert results[0].error == (
        "snmp 127.0.0.1:%d: profile eltek read nothing: the device answered none of its objects "
        "(sysObjectID 1.3.6.1.4.1.705.1, sysDescr 'EATON 93E 80')" % sim.port
    )


def test_poll_command_exits_non_zero_and_says_what_it_found(sim, tmp_path):
    cfg = tmp_path / "site.toml"
    cfg.write_text(
        '[site]\nid = "t"\nkind = "bts"\n\n[storage]\ndir = "%s"\n\n'
        '[[devices]]\nid = "ups-emerson"\ndriver = "snmp"\ninterval = 10\ntimeout = 3\n\n'
        '[devices.snmp]\nhost = "127.0.0.1"\nport = %d\ncommunity = "%s"\n\n'
        '[[devices]]\nid = "ups-eaton"\ndriver = "snmp-lite"\ninterval = 10\ntimeout = 3\n\n'
        '[devices.snmp]\nhost = "127.0.0.1"\nport = %d\ncommunity = "%s"\nprofile = "eltek"\n'
        % (tmp_path / "data", sim.port, EMERSON, sim.port, EATON)
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([sys.executable, "-m", "agent.host.cli", "poll", "-c", str(cfg)],
                       capture_output=True, text=True, timeout=60, cwd=root)  # fmt: skip
    assert r.returncode == 1, r.stderr
    assert "WARNING poll: snmp 127.0.0.1:%d: no supported device detected" % sim.port in r.stderr
    assert "device=ups-emerson" in r.stderr
    assert "ups-eaton: STALE: snmp 127.0.0.1:%d: profile eltek read nothing" % sim.port in r.stderr
    assert "device.identified" in r.stdout and "1.3.6.1.4.1.13400.2.1" in r.stdout


# --- 5. APC rPDU2 -------------------------------------------------------------------------
@pytest.mark.parametrize("cls", DRIVERS)
def test_rpdu2_only_pdu(sim, cls):
    rec = sim.expected(PDU2_ONLY)
    assert not [o for o in rec if o.startswith("1.3.6.1.4.1.318.1.1.12.")]  # no rPDU at all
    driver, s = poll(cls, device(sim, PDU2_ONLY))
    assert driver.chosen == "apc-pdu"
    check_registry(s)
    assert val(s, "device.model") == rec[P2 + "2.1.8.1"][1] == "AP8641"
    assert val(s, "output.power") == num(rec, P2 + "4.3.1.5.1") * 10  # 0.01 kW -> W
    assert val(s, "phase.1.current") == pytest.approx(num(rec, P2 + "6.3.1.5.1") / 10)
    assert val(s, "phase.1.voltage") == num(rec, P2 + "6.3.1.6.1")
    banks, currents = column(rec, P2 + "8.3.1.3"), column(rec, P2 + "8.3.1.5")
    assert len(banks) == 2
    for r, bank in banks.items():
        assert val(s, "bank.%s.current" % bank) == pytest.approx(int(currents[r]) / 10)
    numbers, states = column(rec, P2 + "9.2.3.1.4"), column(rec, P2 + "9.2.3.1.5")
    assert len(numbers) == 24 and set(states.values()) == {"1", "2"}
    for r, n in numbers.items():
        assert val(s, "outlet.%s.status" % n) == {"1": "off", "2": "on"}[states[r]]
    metered, amps = column(rec, P2 + "9.4.3.1.4"), column(rec, P2 + "9.4.3.1.6")
    watts = column(rec, P2 + "9.4.3.1.7")
    for r, n in metered.items():
        assert val(s, "outlet.%s.current" % n) == pytest.approx(int(amps[r]) / 10)
        assert val(s, "outlet.%s.power" % n) == int(watts[r])


# --- 6. values of the wrong type are left out and counted -------------------------------------
@pytest.mark.parametrize("cls", DRIVERS)
def test_timeticks_where_ups_mib_says_integer_are_left_out(sim, cls):
    """Santak Array 3A3 (WebPower Pro II card): runtime, battery current and output frequency
    come as TimeTicks 0 on a UPS at 100 % charge."""
    rec = sim.expected(SANTAK)
    for oid in ("2.3.0", "2.6.0", "4.2.0"):
        assert rec[UPS + oid] == ("67", "0")  # TimeTicks in the recording
    driver, results = poll_results(cls, device(sim, SANTAK), times=2)
    s = as_dict(results[1])
    assert val(s, "battery.charge") == 100
    assert "battery.runtime" not in s and "battery.current" not in s
    assert "output.frequency" not in s
    assert driver.wrong_types == 6  # three values, two polls
    said = warnings(results)
    assert len(said) == 3  # once per OID, not every poll
    assert "1.3.6.1.2.1.33.1.2.3.0 (battery.runtime) answered TimeTicks, not the type its " \
        "MIB defines: left out" in " ".join(said)  # fmt: skip


# --- 7. vendor views; per-phase load ----------------------------------------------------------
@pytest.mark.parametrize("cls", DRIVERS)
def test_huawei_ups5000_reads_its_vendor_mib(sim, cls):
    rec = sim.expected(HUAWEI)
    assert num(rec, UPS + "2.4.0") == -1 and num(rec, UPS + "2.3.0") == -1  # UPS-MIB: unknown
    assert num(rec, UPS + "4.4.1.5.1") == 8 and num(rec, UPS + "4.3.0") == 1  # one line, 8 %
    driver, s = poll(cls, device(sim, HUAWEI))
    assert driver.chosen == "huawei-ups"
    check_registry(s)
    assert val(s, "battery.charge") == num(rec, HW + "6.100.1.3.1") == 100
    assert val(s, "battery.runtime") == num(rec, HW + "6.100.1.4.1") == 28080
    loads = [num(rec, HW + "4.100.1.%d.1" % c) / 10 for c in (14, 15, 16)]
    assert [val(s, "ups.load.l%d" % n) for n in (1, 2, 3)] == loads == [20.0, 21.9, 48.1]
    assert val(s, "ups.load") == 48.1  # the most loaded phase, not UPS-MIB's 8 %
    for n, col in ((1, 1), (2, 2), (3, 3)):
        assert val(s, "input.voltage.l%d" % n) == num(rec, HW + "3.100.1.%d.1" % col) / 10
    assert val(s, "ups.status") == "OL"  # from UPS-MIB, which the vendor view keeps
    assert "battery.temperature" not in s  # 4294967295 on the wire: outside -20..80 C


@pytest.mark.parametrize("cls", DRIVERS)
def test_three_phase_ups_mib_load_is_published_per_phase(sim, cls):
    rec = sim.expected(EATON)
    loads = column(rec, UPS + "4.4.1.5")
    assert len(loads) == 3
    _, s = poll(cls, device(sim, EATON))
    for row, load in loads.items():
        assert val(s, "ups.load.l%d" % row) == int(load)
    assert val(s, "ups.load") == max(int(v) for v in loads.values())


# --- 8. the cause of a silence ---------------------------------------------------------------
@pytest.mark.parametrize("cls", DRIVERS)
def test_no_listener_wrong_community_and_silence_are_told_apart(sim, cls):
    port = free_udp_port()  # nothing listens: ICMP port unreachable
    snmp = {"host": "127.0.0.1", "port": port, "community": "c", "retries": 1}
    dev = {"id": "d", "timeout": 1, "snmp": snmp}
    _, results = poll_results(cls, dev, budget=1)
    assert results[0].error == (
        "snmp 127.0.0.1:%d: no SNMP agent listening on that port (ICMP port unreachable, "
        "2 tries of 0.45s)" % port
    )
    # snmpsim up, community unknown to it: v2c agents drop it in silence
    _, results = poll_results(cls, device(sim, None, community="wrong", retries=1, timeout=1),
                              budget=1)  # fmt: skip
    assert results[0].error == (
        "snmp 127.0.0.1:%d: no answer to 2 tries of 0.45s (wrong community or agent down)"
        % sim.port
    )


def test_v3_refusals_name_what_was_refused(sim):
    base = dict(version="3", user=V3["user"], auth_protocol="SHA", auth_key=V3["auth_key"],
                priv_protocol="AES", priv_key=V3["priv_key"], security_level="authPriv",
                context=EATON, retries=0)  # fmt: skip
    cases = (
        ({"user": "nobody"}, "SNMPv3 authorization error: unknown user 'nobody' "
                             "(usmStatsUnknownUserNames)"),
        ({"auth_key": "not-the-key-0"}, "SNMPv3 authorization error: wrong authentication key "
                                        "or protocol (usmStatsWrongDigests)"),
        ({"security_level": "authNoPriv"}, "SNMPv3 authorization error: security level "
                                           "authNoPriv not allowed for user 'agent' "
                                           "(usmStatsUnsupportedSecLevels)"),
        # snmpsim (like any pysnmp agent) drops an unknown context without a report
        ({"context": "no/such"}, "no answer to 1 try of 1.8s (agent down, or it drops this "
                                 "user, level or context)"),
    )  # fmt: skip
    for over, want in cases:
        cfg = dict(base, **over)
        _, results = poll_results(SnmpDriver, device(sim, None, **cfg), budget=2)
        assert results[0].error == "snmp 127.0.0.1:%d: %s" % (sim.port, want), over


def test_v3_report_of_an_unknown_context_is_named():
    """net-snmp answers an unknown context with a snmpUnknownContexts report, which pysnmp hands
    over as ReportPduReceived. No agent here sends it (snmpsim and pysnmp agents drop the
    request), so this checks the words for pysnmp's indication directly."""
    from pysnmp.proto import errind

    driver = SnmpDriver({"id": "d", "snmp": {"host": "h", "version": "3", "user": "u",
                                             "context": "site-7"}})  # fmt: skip
    got = driver._refused(errind.ReportPduReceived("1.3.6.1.6.3.12.1.5.0"))
    assert got == "SNMPv3 unknown context 'site-7' (snmpUnknownContexts)"
    assert driver._refused(errind.ReportPduReceived("1.3.6.1.6.3.99.0")).startswith(
        "SNMPv3 report 1.3.6.1.6.3.99.0"
    )


# --- 9. names say what the device is -----------------------------------------------------------
def test_registry_has_the_device_names_and_not_the_router_ones():
    names = ("device.model", "device.firmware", "device.uptime", "device.rebooted",
             "device.profile", "device.identified", "device.object_id", "device.description",
             "ups.load.l1", "bank.2.current", "outlet.3.power")  # fmt: skip
    for name in names:
        assert registry.is_known(name), name
    assert not registry.is_known("router.uptime") and not registry.is_known("router.rebooted")


def test_explicit_profiles_identify_too(sim):
    with pytest.raises(ConfigError, match="unknown .no-such."):
        SnmpDriver({"id": "d", "snmp": {"host": "h", "profile": "no-such"}})
    driver, results = poll_results(SnmpDriver, device(sim, EATON, profile="ups-mib"))
    s = as_dict(results[0])
    assert val(s, "device.profile") == "ups-mib" and val(s, "device.identified") is True
    assert "profile ups-mib (configured); sysObjectID 1.3.6.1.4.1.705.1" in remarks(results)[0]
