"""`xdetox eval generate | score | metrics` end to end on a tiny model and the real prompts."""
from __future__ import annotations

import json

import pandas as pd

from interp.app.cli import main


def test_eval_cli_end_to_end(tmp_path, tiny_dirs, capsys) -> None:
    samples, scored = tmp_path / "s.jsonl", tmp_path / "sc.jsonl"
    rc = main(["eval", "generate", "--model", str(tiny_dirs["llama"]), "--device", "cpu", "--languages", "en",
               "ZH-Hans", "--n-prompts", "2", "--k", "2", "--max-new-tokens", "3", "--out", str(samples)])
    assert rc == 0
    rows = [json.loads(x) for x in samples.read_text().splitlines()]
    assert len(rows) == 8 and {r["lang"] for r in rows} == {"en", "zh"}
    assert all(r["prompt_id"].startswith("rtplx:") for r in rows)
    from interp.data.rtplx import load_rtplx
    from interp.data.split import is_eval_prompt

    by_id = {p.id: p for p in load_rtplx(None, ["en", "zh"])}
    assert all(is_eval_prompt(by_id[r["prompt_id"]]) for r in rows)  # evaluation split only
    rc = main(["eval", "score", "--samples", str(samples), "--scorer", "lexicon", "--out", str(scored),
               "--cache", str(tmp_path / "c.sqlite")])
    assert rc == 0
    rc = main(["eval", "metrics", "--scored", str(scored), "--before", str(scored), "--out", str(tmp_path / "m"),
               "--n-boot", "20"])
    assert rc == 0
    m = pd.read_csv(tmp_path / "m" / "metrics.csv")
    assert list(m.lang) == ["en", "zh"] and (m.n_prompts == 2).all()
    cmp = pd.read_csv(tmp_path / "m" / "comparison.csv")
    assert (cmp.emt_change.fillna(0) == 0).all()
    out = capsys.readouterr().out
    assert "tables ->" in out
    assert not any(by_id[r["prompt_id"]].text in out for r in rows)  # prompt text is never printed


def test_eval_cli_errors(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("PERSPECTIVE_API_KEY", raising=False)
    (tmp_path / "s.jsonl").write_text('{"prompt_id": "a", "lang": "en", "sample_index": 0, "text": "x"}\n')
    rc = main(["eval", "score", "--samples", str(tmp_path / "s.jsonl"), "--scorer", "perspective",
               "--out", str(tmp_path / "o.jsonl")])
    assert rc == 2 and "export PERSPECTIVE_API_KEY=" in capsys.readouterr().err
    rc = main(["eval", "generate", "--model", "x", "--languages", "xx", "--out", str(tmp_path / "g.jsonl")])
    assert rc == 2 and "unknown language 'xx'" in capsys.readouterr().err
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"garbage" * 200)
    rc = main(["eval", "score", "--samples", str(tmp_path / "s.jsonl"), "--scorer", "lexicon",
               "--out", str(tmp_path / "o2.jsonl"), "--cache", str(bad)])
    assert rc == 2 and "corrupt score cache" in capsys.readouterr().err


def test_evaluate_imports_without_trl() -> None:
    import subprocess
    import sys

    code = "import sys, detox_train.evaluate, interp.app.cli_eval; print('trl' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_eval_score_cli_uses_the_hf_scorer(tmp_path, tiny_tokenizer, capsys) -> None:
    """`--scorer hf --hf-model DIR` scores with that classifier, not the lexicon (issue 14 review)."""
    import torch

    from tiny_models import save_tiny_classifier

    model = save_tiny_classifier(tiny_tokenizer, tmp_path / "clf")
    samples, out = tmp_path / "s.jsonl", tmp_path / "o.jsonl"
    texts = ["you are a stupid idiot", "this is a nice day"]
    samples.write_text("".join(json.dumps({"prompt_id": f"rtplx:en:{i}", "lang": "en", "sample_index": 0,
                                           "text": t, "n_tokens": 3}) + "\n" for i, t in enumerate(texts)))
    rc = main(["eval", "score", "--samples", str(samples), "--scorer", "hf", "--hf-model", str(tmp_path / "clf"),
               "--no-cache", "--out", str(out)])
    assert rc == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert all(r["scorer"].startswith("hf") for r in rows), [r["scorer"] for r in rows]
    with torch.no_grad():
        ref = [model(**tiny_tokenizer(t, return_tensors="pt")).logits.softmax(-1)[0, 1].item() for t in texts]
    assert [r["score"] for r in rows] == [__import__("pytest").approx(x, abs=1e-5) for x in ref]
    assert "by hf" in capsys.readouterr().out
