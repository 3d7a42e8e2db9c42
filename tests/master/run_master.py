"""Run the master in its own process for crash tests: ``python -m tests.master.run_master CONFIG.json``."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from master.service import serve
from vigil import config
from vigil.log import configure

if __name__ == "__main__":
    tree = json.loads(Path(sys.argv[1]).read_text())
    ack_wait_s = float(tree.pop("_ack_wait_s", 30.0))
    cfg = config.build(tree, environ={})
    configure(cfg.log)
    asyncio.run(serve(cfg, ack_wait_s=ack_wait_s))
