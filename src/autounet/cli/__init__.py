"""Command-line interface: ``autounet COMMAND``; see :func:`autounet.cli.main.main`."""

from __future__ import annotations

import os

__all__: list[str] = []

# Idle OpenMP threads sleep instead of spinning (libgomp reads this once, when torch is first imported, which
# the CLI does after this). With the default spinning, the threads of the main process's last parallel region
# kept both cores of a 2-core machine busy, starving the loader threads that sample and augment the next batch:
# 3D augmented batches/s rose from ~57 to ~83 with 2 loader threads, and training steps were not slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
