"""``ssh-toolkit`` (the console script) and ``python -m ssh_toolkit``.

Imports nothing heavy: signal handling is installed first (``interrupts.main``), then the command line is loaded.
"""

from .interrupts import main

if __name__ == "__main__":  # pragma: no cover
    main()
