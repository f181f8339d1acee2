"""The short version of every fault drill (scripts/drills/), each as its own program:
it must end with `N passed, 0 failed` and exit status 0."""

import subprocess
import sys

import pytest

from scripts.drills import names

DRILL_TIMEOUT = 600  # the short versions take seconds to a minute; this only stops a hang


@pytest.mark.parametrize("name", names())
def test_drill_passes(name):
    done = subprocess.run([sys.executable, "-m", f"scripts.drills.{name}", "--short"],
                          capture_output=True, text=True, timeout=DRILL_TIMEOUT)
    last = done.stdout.strip().splitlines()[-2:] if done.stdout.strip() else []
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(line.startswith(f"{name}: ") and line.endswith(" passed, 0 failed")
               for line in last), done.stdout
