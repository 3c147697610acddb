# The metric registry: exact names, <x> patterns, experimental names, and the table's own shape.
from agent.core import registry
from agent.core.registry import METRICS, is_known, lookup, unit_of

TYPES = ("float", "int", "str", "bool")


def test_exact_name_returns_its_row():
    row = lookup("battery.charge")
    assert row is not None
    assert row[0] == "battery.charge" and row[1] == "%" and row[2] == "float"


def test_pattern_matches_one_component():
    assert lookup("rectifier.3.status")[0] == "rectifier.<n>.status"
    assert lookup("if.wan0.in_bps")[0] == "if.<name>.in_bps"
    assert lookup("battery.cell.16.voltage")[0] == "battery.cell.<n>.voltage"


def test_pattern_with_a_prefix_inside_a_component():
    # input.voltage.l<n>: the table promises input.voltage.l1 .. l3 (one component "l<n>").
    assert lookup("input.voltage.l2") is not None, "input.voltage.l2 not found"
    assert lookup("input.voltage.l2")[0] == "input.voltage.l<n>"
    assert lookup("input.voltage.x2") is None


def test_pattern_needs_the_same_number_of_components():
    assert lookup("rectifier.status") is None
    assert lookup("rectifier.1.2.status") is None
    assert lookup("if.wan0.in_bps.extra") is None


def test_pattern_refuses_an_empty_component():
    assert lookup("rectifier..status") is None
    assert lookup("if..oper") is None


def test_fixed_parts_must_match_exactly():
    assert lookup("rectifier.1.state") is None
    assert lookup("battery.charge.now") is None
    assert lookup("Battery.charge") is None


def test_exact_entry_wins_over_a_pattern():
    # input.voltage.fault is exact; it must not be read as input.voltage.l<n>.
    assert lookup("input.voltage.fault")[0] == "input.voltage.fault"


def test_experimental_names_are_known_without_an_entry():
    assert is_known("experimental.ups.test_result")
    assert not is_known("ups.test_result")
    assert lookup("experimental.ups.test_result") is None


def test_unit_of():
    assert unit_of("battery.voltage") == "V"
    assert unit_of("if.eth0.out_bps") == "bit/s"
    assert unit_of("ups.status") == ""
    assert unit_of("no.such.metric") == ""


def test_every_row_is_well_formed_and_unique():
    seen = set()
    for row in METRICS:
        assert len(row) == 4, row
        name, unit, typ, descr = row
        assert name not in seen, name
        seen.add(name)
        assert typ in TYPES, row
        assert isinstance(unit, str) and isinstance(descr, str) and descr, row
        assert name == name.strip() and " " not in name, name
        for part in name.split("."):
            assert part, name
        assert not name.startswith("experimental."), name


def test_every_row_looks_itself_up():
    for row in METRICS:
        name = row[0]
        if "<" in name:
            name = name.replace("<n>", "7").replace("<name>", "wan0")
        assert lookup(name) is row, name


def test_module_keeps_no_loop_variable():
    # The index is built at import; the loop variable must not leak as a module attribute.
    assert not hasattr(registry, "_row")
