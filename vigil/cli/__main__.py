"""``python -m vigil.cli``: what `vigil up` spawns for each service (the console script's twin)."""

import sys

from vigil.cli import main

sys.exit(main())
