"""`python -m scripts.drills [--short]`: every drill, one after the other, then a summary."""

import subprocess
import sys

from scripts.drills import names


def main() -> None:
    args = sys.argv[1:]
    failed = []
    for name in names():
        print(f"=== {name}", flush=True)
        if subprocess.run([sys.executable, "-m", f"scripts.drills.{name}", *args]).returncode:
            failed.append(name)
    print(f"drills: {len(names()) - len(failed)} passed, {len(failed)} failed"
          + (f" ({', '.join(failed)})" if failed else ""), flush=True)
    sys.exit(1 if failed else 0)


main()
