"""Build a generated corpus folder once, atomically, and reuse it afterwards.

The folder is built under ``<name>.partial-<pid>``, its completion marker is written last and
it is then renamed into place, so an interrupted or concurrent run never exposes half a corpus.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

COMPLETE_MARKER = "COMPLETE.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def build_once(cache_dir: str | Path, name: str, build: Callable[[Path], dict]) -> Path:
    """``cache_dir/name``, built first by ``build(folder)`` unless a complete one is there.

    ``build`` writes the corpus into the (new, empty) folder it is given and returns what the
    completion marker records (JSON). A build that fails is removed, as are stale partial folders
    of dead processes; if another process finishes first, its corpus is kept.
    """
    cache_dir = Path(cache_dir)
    if cache_dir.exists() and not cache_dir.is_dir():
        raise NotADirectoryError(f"corpus cache_dir {cache_dir} is a file: set data.cache_dir to a folder")
    root = cache_dir / name
    if (root / COMPLETE_MARKER).is_file():
        return root
    if root.exists():
        raise RuntimeError(f"{root} exists but has no {COMPLETE_MARKER}: it was not written by this generator "
                           f"(or was damaged); delete it and run again")
    cache_dir.mkdir(parents=True, exist_ok=True)
    for stale in cache_dir.glob(f"{name}.partial-*"):
        pid = stale.name.rsplit("-", 1)[1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(stale)
    partial = cache_dir / f"{name}.partial-{os.getpid()}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    try:
        marker = build(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # a failed build leaves nothing behind
        raise
    (partial / COMPLETE_MARKER).write_text(json.dumps(marker, indent=1, sort_keys=True))
    try:
        partial.rename(root)
    except OSError:
        if not (root / COMPLETE_MARKER).is_file():
            raise
        shutil.rmtree(partial)
    return root
