"""Fault drills run from the outside: real server, store and bridge processes, killed and
restarted during traffic, then counted by what the stores hold.

    python -m scripts.drills.<name> [--short]    # one drill
    python -m scripts.drills [--short]           # every drill, one after the other

Each drill prints what it did and ends with `N passed, M failed` (exit status 1 when
anything failed). `--short` is the seconds-long version the test suite runs
(tests/test_drills.py). The harness they share is scripts/drills/common.py.
"""

import pkgutil

HARNESS = {"common", "entry_counts", "__main__"}  # shared by drills, not drills


def names() -> list[str]:
    """Every drill module in this package, by name."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in HARNESS)
