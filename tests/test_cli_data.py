"""``xdetox data check``: table on good data, non-zero exit naming the file on bad data."""
from __future__ import annotations

from pathlib import Path

import pytest

from interp.app.cli import main
from interp.app.cli_data import check_data, format_check
from test_data_helpers import make_mini_root


def test_check_mini_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_mini_root(tmp_path / "data")
    rc = main(["data", "check", "--data-root", str(root), "--locale-dir", str(tmp_path / "no-locale")])
    out = capsys.readouterr().out
    assert rc == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()
            if line[:2] in {"en", "id", "zh"} and len(line.split()) == 7}
    # rtplx, eval, train, t200, lexicon, gettext
    assert rows["en"][0] == "12" and rows["en"][3] == "3" and rows["en"][4] == "2"
    assert int(rows["en"][1]) + int(rows["en"][2]) == 12
    assert rows["id"][4] == "-"
    assert "ParaDetox: 3 rows" in out and "Davidson: 3 tweets" in out and "Jigsaw sample: 2 comments (1 toxic)" in out
    assert "note: no gettext catalogs" in out


def test_check_fails_on_malformed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_mini_root(tmp_path / "data")
    csv = root / "davidson-hate-offensive" / "labeled_data.csv"
    csv.write_text(csv.read_text() + "3,3,0,0,3,neither,d\n")
    (root / "ldnoobw" / "de.txt").unlink()
    (root / "rtp-lx-v0.2" / "RTP_LX_FR.jsonl").write_text('{"Prompt": "x"\n')
    rc = main(["data", "check", "--data-root", str(root), "--locale-dir", str(tmp_path)])
    cap = capsys.readouterr()
    assert rc == 1
    assert "ERROR Davidson:" in cap.out and "labeled_data.csv:5: field 'class'" in cap.out
    assert "ERROR RTP-LX:" in cap.out and "RTP_LX_FR.jsonl:1: bad JSON" in cap.out
    assert "malformed or missing" in cap.err


def test_missing_root_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", "--data-root", str(tmp_path / "absent")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["data", "check", "--help"])
    assert e.value.code == 0 and "--data-root" in capsys.readouterr().out


def test_check_real_data(data_root: Path) -> None:
    report = check_data(data_root)
    assert not report.errors, report.errors
    assert report.per_language["ru"]["rtplx"] == 1225 and report.per_language["zh"]["t200"] == 200
    assert report.per_language["id"]["lexicon"] == "-" and report.per_language["en"]["lexicon"] == 403
    assert report.totals["Davidson"].startswith("24783 tweets (hate 1430, offensive 19190, neither 4163")
    text = format_check(report)
    assert "RTP-LX alignment" in text
