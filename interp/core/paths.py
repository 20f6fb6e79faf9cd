"""Where inputs and caches live: the data root and the cache directory, each decided in one place."""
from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "XDETOX_DATA"
CACHE_ENV = "XDETOX_CACHE"


def data_root(flag: str | os.PathLike[str] | None = None) -> Path:
    """Return the data root: the ``flag`` if given, else ``$XDETOX_DATA``, else ``../shared/data``.

    The relative default is resolved against the current directory first and then against the
    project checkout, so both ``make`` (run from the repo root) and tests find it.
    """
    if flag:
        root = Path(flag).expanduser()
        source = "--data-root"
    elif os.environ.get(DATA_ENV):
        root = Path(os.environ[DATA_ENV]).expanduser()
        source = f"${DATA_ENV}"
    else:
        source = "default ../shared/data"
        candidates = [Path.cwd() / ".." / "shared" / "data",
                      Path(__file__).resolve().parents[2] / ".." / "shared" / "data"]
        root = next((c for c in candidates if c.is_dir()), candidates[0])
    root = root.resolve()
    if not root.is_dir():
        raise FileNotFoundError(
            f"data root {root} (from {source}) does not exist; pass --data-root DIR or set "
            f"{DATA_ENV}=DIR to the folder holding rtp-lx-v0.2/, paradetox-en/, ldnoobw/ ..."
        )
    return root


def cache_dir(sub: str | None = None) -> Path:
    """Return (and create) the xdetox cache directory: ``$XDETOX_CACHE`` or ``~/.cache/xdetox``."""
    base = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "xdetox").expanduser()
    path = base / sub if sub else base
    path.mkdir(parents=True, exist_ok=True)
    return path
