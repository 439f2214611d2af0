from datetime import timedelta

from feedback.timeline import format_offset


def test_offsets_read_as_milliseconds_then_seconds():
    assert format_offset(timedelta(0)) == "+0 ms"
    assert format_offset(timedelta(milliseconds=12.4)) == "+12 ms"
    assert format_offset(timedelta(milliseconds=999)) == "+999 ms"
    assert format_offset(timedelta(seconds=3.012)) == "+3.01 s"
    # Clocks of two processes may disagree a little: never a negative time.
    assert format_offset(timedelta(milliseconds=-3)) == "+0 ms"
