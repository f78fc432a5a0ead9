"""``python -m autounet`` runs the CLI."""

from __future__ import annotations

import sys

from autounet.cli.main import main

sys.exit(main())
