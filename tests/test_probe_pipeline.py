"""train_probe, transfer_report and the ``xdetox probe`` CLI on a tiny model and a tiny data root."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from interp.data.records import Prompt
from interp.model.loading import load_model
from probes import ToxicityProbe, extract_features, load_probe_data, split_records, train_probe, transfer_report

NOUNS = ["dog", "house", "car", "day", "idea", "plan", "friend", "city", "song", "book", "tree", "road"]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """A data root with a small ParaDetox TSV and RTP-LX files for en and de."""
    root = tmp_path_factory.mktemp("data")
    (root / "paradetox-en").mkdir()
    lines = ["toxic\tneutral1\tneutral2\tneutral3"]
    for i in range(48):
        n = NOUNS[i % len(NOUNS)]
        lines.append(f"you stupid idiot {n} {i}\tyou are nice {n} {i}\tthat is a good {n}\t")
    (root / "paradetox-en" / "paradetox.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rtp = root / "rtp-lx-v0.2"
    rtp.mkdir()
    for code in ("EN", "DE"):
        rows = []
        for i in range(30):
            tox = [1.0, 1.2, 2.0, 3.5, 5.0][i % 5]
            text = f"{'stupid idiot' if tox >= 3 else 'a nice'} {NOUNS[i % len(NOUNS)]} {code} {i}"
            rows.append(json.dumps({"Prompt": text, "Index": i, "Locale": code,
                                    "Annotations": {"Toxicity": tox}}))
        (rtp / f"RTP_LX_{code}.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def bridge(tiny_dirs):
    return load_model(tiny_dirs["gpt2"], device="cpu", dtype="float32")


def test_split_keeps_paraphrase_groups_together(tiny_root) -> None:
    from interp.data.sources import paradetox_labeled

    records = paradetox_labeled(tiny_root)
    train, test = split_records(records, test_fraction=0.25, seed=99)
    group = lambda r: r.id.rsplit(":", 1)[0]  # noqa: E731
    assert {group(r) for r in train}.isdisjoint({group(r) for r in test})
    assert len(train) + len(test) == len(records) and test
    again = split_records(list(reversed(records)), test_fraction=0.25, seed=99)
    assert sorted(r.id for r in again[1]) == sorted(r.id for r in test)  # order-independent
    capped, capped_test = split_records(records, seed=99, max_examples=20)
    assert 20 <= len(capped) + len(capped_test) < 20 + 3


def test_train_probe_end_to_end(bridge, tiny_root, tmp_path) -> None:
    probe, metrics = train_probe(bridge, load_probe_data("paradetox", data_root=tiny_root), solver="logreg",
                                 random_init_baseline=True,
                                 cache_dir=tmp_path, progress=False)
    for split in ("train", "test"):
        assert set(metrics[split]) >= {"accuracy", "roc_auc", "f1", "n"}
    assert metrics["n_train"] + metrics["n_test"] == metrics["n_texts"] == 48 * 3
    assert metrics["test"]["accuracy"] > 0.8  # "stupid idiot" vs "nice" is easy even for a tiny model
    assert "test" in metrics["random_init"]
    from interp.model.loading import model_fingerprint

    assert probe.meta_["fingerprint"] == model_fingerprint(bridge) and probe.meta_["pooling"] == "mean"
    # features were extracted once per model: one cache file for the model, one for the random copy
    assert len(list(tmp_path.glob("*.safetensors"))) == 2
    paper, pm = train_probe(bridge, load_probe_data("paradetox", data_root=tiny_root), cache_dir=tmp_path,
                            progress=False, max_examples=60)
    assert pm["best_epoch"] == paper.best_epoch_ and "val" in pm and pm["n_texts"] <= 62


def test_transfer_report_against_hand_computation(bridge) -> None:
    rng = np.random.default_rng(0)
    words = ["stupid idiot", "nice", "hell", "day", "dog", "home"]
    prompts = []
    for lang in ("en", "de"):
        for i in range(24):
            tox = [1.0, 1.34, 2.0, 3.0, 4.5, None][i % 6]
            text = f"{words[rng.integers(len(words))]} {words[rng.integers(len(words))]} {i}"
            prompts.append(Prompt(id=f"rtplx:{lang}:{i}", lang=lang, text=text, index=i, toxicity=tox,
                                  source="rtplx", group=i))
    X = torch.randn(40, 32)
    probe = ToxicityProbe(solver="logreg").fit(X, (X[:, 0] > 0).long())
    probe.meta_ = {"layer": 0, "pooling": "last"}
    table = transfer_report(bridge, probe, prompts, progress=False, cache_dir=None)
    assert list(table.columns) == ["lang", "n", "n_toxic", "n_clean", "auc", "spearman", "n_rated"]
    assert "text" not in table.columns and table["lang"].tolist() == ["de", "en"]
    for lang in ("de", "en"):
        rated = [p for p in prompts if p.lang == lang and p.toxicity is not None]
        s = probe.decision_function(extract_features(bridge, [p.text for p in rated], layer=0, pooling="last",
                                                     use_cache=False, progress=False))
        r = np.array([p.toxicity for p in rated])
        pos, neg = s[r >= 3.0], s[r <= 1.34]
        auc = np.mean([(a > b) + 0.5 * (a == b) for a in pos for b in neg])
        row = table.set_index("lang").loc[lang]
        assert (row.n_toxic, row.n_clean, row.n, row.n_rated) == (len(pos), len(neg), len(pos) + len(neg), 20)
        assert row.auc == pytest.approx(auc, abs=1e-9)
        from scipy.stats import spearmanr

        assert row.spearman == pytest.approx(spearmanr(s, r).statistic)
    with pytest.raises(ValueError, match="none of the 2 prompts has a toxicity rating"):
        transfer_report(bridge, probe, [p for p in prompts if p.toxicity is None][:2], progress=False)


def test_train_probe_errors(bridge, tiny_root) -> None:
    with pytest.raises(ValueError, match="dataset must be one of"):
        load_probe_data("imdb", data_root=tiny_root)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs jigsaw_path"):
        load_probe_data("jigsaw", data_root=tiny_root)
    with pytest.raises(ValueError, match="no labelled texts"):
        train_probe(bridge, [])


def test_cli_train_show_eval_import(tiny_dirs, tiny_root, tmp_path, capsys, monkeypatch) -> None:
    from interp.app.cli import main

    monkeypatch.setenv("XDETOX_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "probe"
    common = ["--model", str(tiny_dirs["gpt2"]), "--device", "cpu", "--dtype", "float32", "--data-root", str(tiny_root)]
    assert main(["probe", "train", *common, "--out", str(out), "--solver", "logreg", "--pooling", "max"]) == 0
    text = capsys.readouterr().out
    assert "test" in text and (out / "probe.safetensors").is_file() and (out / "metrics.json").is_file()
    assert main(["probe", "show", "--probe", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "final-norm/max" in shown and "fingerprint" in shown
    csv = tmp_path / "transfer.csv"
    assert main(["probe", "eval", *common, "--probe", str(out), "--languages", "en", "de",
                 "--max-prompts", "20", "--out", str(csv)]) == 0
    table = capsys.readouterr().out
    assert "auc" in table and "stupid" not in table  # aggregates only, never prompt text
    import pandas as pd

    df = pd.read_csv(csv)
    assert df["lang"].tolist() == ["de", "en"] and (df["n_rated"] == 20).all()
    assert df["auc"].notna().all() and not math.isnan(df["spearman"].iloc[0])
    from interp.core.artifacts import file_sha256, read_json, table_manifest_path

    man = read_json(table_manifest_path(csv))  # the table's own manifest, tied to its bytes
    assert man["kind"] == "probe-transfer" and man["table"]["sha256"] == file_sha256(csv, None)
    # a probe of another model is refused with a clear message
    other = tiny_dirs["llama"]
    assert main(["probe", "eval", "--model", str(other), "--device", "cpu", "--data-root", str(tiny_root),
                 "--probe", str(out)]) == 2
    assert "fingerprint" in capsys.readouterr().err
    torch.save(torch.nn.Linear(32, 1, bias=False), tmp_path / "english-probe.pt")
    assert main(["probe", "import", "--pt", str(tmp_path / "english-probe.pt"), "--out", str(tmp_path / "imp")]) == 0
    assert ToxicityProbe.load(tmp_path / "imp").d_model == 32
