"""``python -m asgigreen``: the command line (see :mod:`asgigreen.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
