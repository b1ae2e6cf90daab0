"""``python -m linprobe`` == the ``linprobe`` command (what ``torchrun -m linprobe`` runs)."""

import sys

from linprobe.pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main())
