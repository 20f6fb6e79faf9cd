"""Every table goes through the one atomic writer (interp.core.artifacts.write_csv), with its manifest."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from interp.core import artifacts
from interp.core.artifacts import make_manifest, table_manifest_path, write_csv

ROOT = Path(__file__).resolve().parents[1]


def test_no_table_write_bypasses_the_artifact_writer() -> None:
    offenders = []
    for pkg in ("interp", "probes", "detox_train", "benchmarks"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if path == ROOT / "interp" / "core" / "artifacts.py":
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if ".to_csv(" in line:
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "write tables with interp.core.artifacts.write_csv:\n" + "\n".join(offenders)


def test_table_and_manifest_are_tied_by_hash(tmp_path: Path) -> None:
    df = pd.DataFrame({"lang": ["en", "de"], "emt": [0.25, 0.5]})
    out = write_csv(tmp_path / "t.csv", df, manifest=make_manifest(kind="test-table", seed=3))
    man = json.loads(table_manifest_path(out).read_text(encoding="utf-8"))
    assert table_manifest_path(out).name == "t.csv.manifest.json"
    assert man["kind"] == "test-table" and man["seed"] == 3 and "versions" in man
    assert man["table"] == {"file": "t.csv", "sha256": hashlib.sha256(out.read_bytes()).hexdigest(), "rows": 2,
                            "columns": ["lang", "emt"]}
    pd.testing.assert_frame_equal(pd.read_csv(out), df)
    # Without a manifest only the table is written (its directory's manifest lists it).
    write_csv(tmp_path / "u.csv", df)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.csv.manifest.json", "u.csv"]


def test_a_failed_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.csv"
    write_csv(path, pd.DataFrame({"a": [1]}))
    old = path.read_bytes()

    def crash(src, dst):  # the rename that would publish the new file fails (disk full, kill -9 ...)
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(artifacts.os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        write_csv(path, pd.DataFrame({"a": list(range(10_000))}), manifest=make_manifest(kind="test-table"))
    monkeypatch.undo()
    assert path.read_bytes() == old  # the old table is intact, no half-written one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]  # no temp file, no orphan manifest

    class Broken(pd.DataFrame):
        def to_csv(self, *a, **k):  # noqa: ANN001, ANN002, ANN003
            raise ValueError("cannot render")

    with pytest.raises(ValueError, match="cannot render"):
        write_csv(tmp_path / "new.csv", Broken({"a": [1]}))
    assert not (tmp_path / "new.csv").exists()
    assert os.listdir(tmp_path) == ["t.csv"]


def test_atomic_dir_replaces_only_when_complete(tmp_path: Path) -> None:
    from interp.core.artifacts import atomic_dir

    target = tmp_path / "model"
    with atomic_dir(target) as d:
        (d / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as d:
            (d / "a.txt").write_text("half")
            raise RuntimeError("crash mid-write")
    assert (target / "a.txt").read_text() == "one" and os.listdir(tmp_path) == ["model"]  # no temp dir left
    with atomic_dir(target) as d:
        (d / "b.txt").write_text("two")
    assert os.listdir(target) == ["b.txt"]  # the old directory is replaced, not merged into
