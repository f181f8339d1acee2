"""The clock every model reads: wall time, or a clock tests move."""

import time
from datetime import UTC, datetime, timedelta

from models.common import Clock, ManualClock


def test_a_clock_that_moves_now_moves_time_with_it():
    """Clock.time is the wall clock's own (a datetime per call was most of its cost): a clock
    that moves `now` must not leave `time` on the wall clock."""
    manual = ManualClock(datetime(2030, 1, 1, tzinfo=UTC))
    manual.advance(90)
    assert manual.time() == datetime(2030, 1, 1, 0, 1, 30, tzinfo=UTC).timestamp()

    class Shifted(Clock):
        def now(self) -> datetime:
            return datetime.now(UTC) + timedelta(days=3)

    assert Shifted().time() - time.time() > 3 * 86400 - 60
    assert abs(Clock().time() - time.time()) < 60
