"""Run Django's ``runtests.py`` with every signal of the process signalbox's.

Usage: ``python tests/django_suite/run.py DJANGO_TESTS_DIR [runtests args]``,
with this checkout's ``src`` and root on ``PYTHONPATH``. Exits with
runtests' status, or 3 if any Django signal escaped the swap.
"""

from __future__ import annotations

import os
import runpy
import sys


def main() -> int:
    tests_dir = os.path.abspath(sys.argv[1])
    from tests.django_suite import swap

    swapped = swap.swap_every_signal()
    print(f"signalbox: swapped {swapped} existing signals", flush=True)
    sys.argv = [os.path.join(tests_dir, "runtests.py"), *sys.argv[2:]]
    sys.path.insert(0, tests_dir)
    status: int | str | None = 0
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as exit_:
        status = exit_.code
    escaped = swap.not_swapped()
    if escaped:
        print(f"signalbox: signals left unswapped: {escaped!r}", flush=True)
        return 3
    return status if isinstance(status, int) else 1


if __name__ == "__main__":
    sys.exit(main())
