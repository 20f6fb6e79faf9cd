"""The CLI boundary: a user error is one line and exit 2, Ctrl-C says how to resume, anything else is a bug."""
from __future__ import annotations

import argparse
import sys
from typing import Any


BUG_REPORT = ("xdetox: this is a bug, not a problem with your input: please report it with the command, "
              "the traceback above and `pip freeze` at https://github.com/xdetox/xdetox/issues")
INTERRUPTED = ("xdetox: interrupted; finished work is saved: rerun the same command to resume "
               "where it stopped")


def _os_error_message(e: OSError) -> str:
    """Return one line for an OS error: what happened, to which path, and what to do."""
    import errno

    name = e.filename if e.filename is not None else ""
    what = e.strerror or str(e)
    if not name:  # libraries raise OSError("...") with their own message (e.g. transformers)
        return str(e)
    hints = {
        errno.EACCES: "check its permissions or choose a writable location",
        errno.EPERM: "check its permissions or choose a writable location",
        errno.EROFS: "the file system is read-only: choose another output location",
        errno.ENOSPC: "the disk is full: free space and rerun (finished work is kept)",
        errno.EISDIR: "it is a directory: give a file path",
        errno.ENOTDIR: "a parent of it is a file, not a directory: choose another path",
        errno.EEXIST: "it already exists: choose another path or remove it",
        errno.ENOENT: "check the path",
        errno.ENOTEMPTY: "the directory is not empty: choose another one or empty it",
    }
    hint = hints.get(e.errno or -1, "")
    return f"{what}: {name}" + (f"; {hint}" if hint else "")


def user_error_message(e: BaseException) -> str | None:
    """Return the one-line message for a user-facing error, or None when ``e`` is a bug.

    User-facing: bad values and files (``ValueError`` and its subclasses: config, data format,
    input errors), OS errors on a path (missing, permission, read-only, full disk, a folder
    where a file was expected), a missing optional package, unreadable YAML/CSV/SQLite files.
    """
    import csv
    import sqlite3

    import yaml

    if isinstance(e, UnicodeDecodeError):  # a loader that did not name the file (should not happen)
        msg = f"an input file is not valid UTF-8 ({e.reason} at byte {e.start}); re-save it as UTF-8"
    elif isinstance(e, (ModuleNotFoundError, ImportError)):
        if (getattr(e, "name", None) or "").split(".")[0] in ("interp", "probes", "detox_train"):
            return None  # a broken import inside the project is a bug, not a missing package
        msg = str(e)
        if "pip install" not in msg and getattr(e, "name", None):
            msg += f"; install it with `pip install {e.name.split('.')[0]}`"
    elif isinstance(e, OSError):
        msg = _os_error_message(e)
    elif isinstance(e, yaml.YAMLError):
        msg = f"invalid YAML ({e})"
    elif isinstance(e, (ValueError, csv.Error, sqlite3.DatabaseError)):
        msg = str(e)
    else:
        return None
    return " ".join(msg.split()) or type(e).__name__


def run_command(func: Any, args: argparse.Namespace, *, prog: str = "xdetox") -> int:
    """Run one parsed command at the CLI boundary.

    A user error prints ``PROG: error: MESSAGE`` (one line, no traceback) and returns 2; Ctrl-C
    prints one line saying the run can be resumed and returns 130; any other exception is a bug:
    its traceback is printed with a line asking for a report, and 1 is returned. ``--debug`` or
    ``$XDETOX_DEBUG=1`` re-raises instead.
    """
    import os
    import traceback

    debug = bool(getattr(args, "debug", False)) or os.environ.get("XDETOX_DEBUG", "") not in ("", "0")
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        # Start on a fresh line: a progress bar may have left the cursor mid-line.
        print("\n" + INTERRUPTED.replace("xdetox", prog, 1), file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - this is the boundary
        if debug:
            raise
        msg = user_error_message(e)
        if msg is not None:
            print(f"{prog}: error: {msg}", file=sys.stderr)
            return 2
        traceback.print_exc(file=sys.stderr)
        print(BUG_REPORT.replace("xdetox", prog, 1), file=sys.stderr)
        return 1
