"""The one place where services are wired together: what `vigil <command>` runs."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from vigil.cli import up as allinone
from vigil.config import VigilConfig
from vigil.exitcodes import Exit

# Problems printed without a traceback: the operator's to fix (exit 1), or a dependency that failed (exit 5).
UserError = allinone.UserError
DependencyError = allinone.DependencyError


# -- single services ---------------------------------------------------------------------------------


async def sensor(cfg: VigilConfig) -> int:
    from sensor.service import serve

    return await serve(cfg)


async def master(cfg: VigilConfig) -> int:
    import gc

    from master.service import serve
    from master.store import StoreLayoutError

    # The process is the master's: everything imported so far lives for ever, so take it out of the
    # collector's full scans (the batch path pauses the collector around its steps; see master/gcpause.py).
    gc.freeze()
    try:
        await serve(cfg)
    except StoreLayoutError as exc:
        print(f"vigil master: {exc}", file=sys.stderr)
        return Exit.DEPENDENCY
    return Exit.OK


async def responder(cfg: VigilConfig) -> int:
    from responder.service import serve

    await serve(cfg)
    return Exit.OK


async def console(cfg: VigilConfig) -> int:
    from master.api.service import serve

    await serve(cfg)
    return 0


def analyze(cfg: VigilConfig, captures: Sequence[Path], as_json: bool, learn: Sequence[Path] = ()) -> int:
    from vigil.cli.offline import analyze_captures

    return analyze_captures(cfg, captures, as_json=as_json, out=sys.stdout, learn=learn)


def evaluate(cfg: VigilConfig, directory: Path, as_json: bool) -> int:
    from vigil.cli.evaluate import evaluate_directory

    return evaluate_directory(cfg, directory, as_json=as_json, out=sys.stdout)


def sensor_read(cfg: VigilConfig, captures: Sequence[Path], fmt: str, out: Path) -> int:
    from sensor.logwriter import read_to_logs

    return read_to_logs(cfg, captures, fmt, out)


# -- all in one --------------------------------------------------------------------------------------


async def up(cfg: VigilConfig, exit_when_done: bool = False, fresh: bool = False) -> int:
    return await allinone.run(cfg, exit_when_done=exit_when_done, fresh=fresh, out=sys.stdout)
