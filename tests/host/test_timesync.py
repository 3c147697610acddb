"""ntp_synced(): the kernel's adjtimex state and systemd-timesyncd's flag file."""

from agent.host.timesync import TIME_ERROR, kernel_state, ntp_synced


def test_kernel_state_is_read_without_changing_the_clock():
    state = kernel_state()
    assert state in (0, 1, 2, 3, 4, 5), state  # TIME_OK .. TIME_ERROR on any Linux host


def test_unsynchronized_kernel_and_no_flag_is_not_synced(tmp_path):
    flag = str(tmp_path / "synchronized")
    assert ntp_synced(lambda buf: TIME_ERROR, flag) is False
    assert ntp_synced(lambda buf: 0, flag) is True
    assert ntp_synced(lambda buf: -1, flag) is False  # adjtimex failed: unknown is not synced
    open(flag, "w").close()
    assert ntp_synced(lambda buf: TIME_ERROR, flag) is True
