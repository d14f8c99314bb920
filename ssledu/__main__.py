"""``python -m ssledu ...`` is the ``ssledu`` command (``torchrun -m ssledu pretrain ...`` needs it)."""

import sys

from ssledu.cli import main

if __name__ == "__main__":
    sys.exit(main())
