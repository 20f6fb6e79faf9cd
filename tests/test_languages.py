"""Languages beyond the paper's 17: a registry of ISO 639-1 / BCP-47 codes, extra RTP-LX locales,
and gaps (lexicon, retrieval data, scorer) reported instead of failing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from interp.data.languages import LANGUAGES, UnknownLanguageError, language_info, normalize_language, normalize_languages
from test_data_helpers import make_mini_root, rtplx_row, write_encrypted_zip

EXTRA = {"sw": "SW", "th": "TH", "he": "HE", "tr": "TR", "uk": "UK", "zh-Hant": "ZH-Hant"}
TEXT = {"sw": "ninataka kwenda nyumbani", "th": "ฉันอยากกลับบ้าน", "he": "אני רוצה ללכת הביתה",
        "tr": "eve gitmek istiyorum", "uk": "я хочу додому", "zh-Hant": "我想回家了"}


def test_registry_codes() -> None:
    assert normalize_languages(None) == list(LANGUAGES) and len(LANGUAGES) == 17
    for raw, want in [("ZH-Hans", "zh"), ("zh_CN", "zh"), ("ZH-Hant", "zh-Hant"), ("zh_TW", "zh-Hant"),
                      ("SW", "sw"), ("iw", "he"), ("nb", "no"), ("pt_BR", "pt"), ("UK", "uk"), ("fi", "fi")]:
        assert normalize_language(raw) == want, raw
    for bad in ("xx", "klingon", "qq", ""):
        with pytest.raises(UnknownLanguageError):
            normalize_language(bad)
    assert language_info("sw").name == "Swahili" and not language_info("sw").paper
    assert language_info("th").spaces is False and language_info("he").script == "Hebr"
    assert language_info("de").perspective == "de" and language_info("tr").perspective is None
    assert language_info("yo").script is None  # an ISO language the registry has no facts for


def _zip(tmp_path: Path) -> Path:
    files = {"RTP-LX/RTP_LX_EN.json": "".join(json.dumps(rtplx_row(i, "EN", f"I want {i}")) + "\n"
                                              for i in range(3)).encode()}
    for lang, code in EXTRA.items():
        files[f"RTP-LX/RTP_LX_{code}.json"] = "".join(
            json.dumps(rtplx_row(str(i), code, f"{TEXT[lang]} {i}", 1.0 + i), ensure_ascii=False) + "\n"
            for i in range(3)).encode()
    files["RTP-LX/RTP_LX_BCMS.json"] = b"{}\n"  # no single ISO code: skipped, not an error
    return write_encrypted_zip(tmp_path / "RTP-LX.zip", files, b"pw")


def test_rtplx_zip_with_extra_locales(tmp_path: Path) -> None:
    from interp.data.coverage import rtplx_languages
    from interp.data.rtplx import load_rtplx
    from interp.app.run_config import load_run_config

    zpath = _zip(tmp_path)
    langs = ["en", *EXTRA]
    assert sorted(rtplx_languages(zip_path=zpath)) == sorted(langs)
    ps = load_rtplx(languages=langs, zip_path=zpath, password="pw")
    assert sorted({p.lang for p in ps}) == sorted(langs) and len(ps) == 3 * len(langs)
    assert "rtplx:zh-Hant:1" in {p.id for p in ps} and "rtplx:sw:2" in {p.id for p in ps}
    cfg = load_run_config(preset="smoke", overrides={"languages": "[en, sw, th, he, tr, uk, ZH-Hant]"})
    assert cfg.languages == langs


def test_gaps_are_reported_not_fatal(tmp_path: Path) -> None:
    from interp.data.coverage import language_coverage
    from interp.data.rtplx import load_rtplx
    from test_data_helpers import write_jsonl

    root = make_mini_root(tmp_path / "root", n=4)
    for lang, code in EXTRA.items():
        write_jsonl(root / "rtp-lx-v0.2" / f"RTP_LX_{code}.jsonl",
                    [rtplx_row(str(i), code, f"{TEXT[lang]} {i}") for i in range(4)])
    cov = language_coverage(["en", "id", *EXTRA, "yo"], root).set_index("lang")
    assert cov.loc["sw", "rtplx_prompts"] == 4 and not cov.loc["sw", "translated200"]
    assert "no bilingual retrieval" in cov.loc["sw", "gaps"] and "no LDNOOBW lexicon" in cov.loc["th", "gaps"]
    assert "Perspective" in cov.loc["tr", "gaps"] and "Perspective" not in cov.loc["en", "gaps"]
    assert cov.loc["en", "gaps"] == "" and "no LDNOOBW lexicon" in cov.loc["id", "gaps"]
    assert "no RTP-LX prompts" in cov.loc["yo", "gaps"] and cov.loc["yo", "script"] == "unknown"
    assert len(load_rtplx(root, ["en", *EXTRA])) == 4 * 7


def test_pipeline_leaves_languages_without_parallel_data_out_of_retrieval(tmp_path: Path) -> None:
    from interp.app.pipeline import Pipeline
    from interp.app.run_config import load_run_config
    from test_data_helpers import write_jsonl

    root = make_mini_root(tmp_path / "root", n=4)
    write_jsonl(root / "rtp-lx-v0.2" / "RTP_LX_SW.jsonl", [rtplx_row(str(i), "SW", f"{TEXT['sw']} {i}")
                                                         for i in range(4)])
    logs: list[str] = []
    cfg = load_run_config(preset="smoke", overrides={"languages": "[en, de, sw]", "data_root": str(root)})
    par = Pipeline(cfg, tmp_path / "run", log=logs.append).parallel_texts("translated200", None)
    assert sorted(par) == ["de", "en"] and any("sw" in m and "translated-200" in m for m in logs)


def test_unspaced_languages_count_characters_and_perspective_says_what_it_lacks(monkeypatch) -> None:
    from detox_train.evaluate import get_scorer
    from detox_train.evaluate.metrics import distinct_n
    from detox_train.evaluate.scorers.perspective import KEY_ENV
    from fake_perspective import KEY, FakePerspective

    assert distinct_n(["ฉันฉัน"], 1, "th") == pytest.approx(3 / 6)  # characters, not one "word"
    assert distinct_n(["ninataka ninataka"], 1, "sw") == pytest.approx(1 / 2)
    monkeypatch.setenv(KEY_ENV, KEY)
    with FakePerspective() as srv:
        c = get_scorer("perspective", qps=1000.0, base_url=srv.url, max_retries=0)
        res = c.score(["eve gitmek", "hello"], ["tr", "en"])
        assert res[0].failed and "no TOXICITY model" in res[0].error and not res[1].failed
        assert [t for t, _ in srv.scored] == ["hello"]  # no request spent on the unsupported language


def test_correlation_stage_keeps_a_language_without_retrieval(tmp_path: Path) -> None:
    """sw has no translated-200 file: its retrieval is NaN, its other signals stay, and the stage
    (with too few languages for a correlation) still finishes."""
    import pandas as pd

    from interp.core.artifacts import write_json
    from interp.app.pipeline import Pipeline
    from interp.app.stages import STAGE_FUNCTIONS
    from interp.app.run_config import load_run_config

    cfg = load_run_config(preset="smoke", overrides={"languages": "[en, de, sw]"})
    pipe = Pipeline(cfg, tmp_path / "run", log=lambda _m: None)
    tables = {
        ("neurons", "value_mass"): pd.DataFrame({"lang": ["en", "de", "sw"], "value_mass": [0.5, 0.3, 0.2]}),
        ("key_activations", "ratio"): pd.DataFrame({"lang": ["en", "de", "sw"], "key_ratio": [1.0, 0.8, 0.6]}),
        ("probe", "transfer"): pd.DataFrame({"lang": ["en", "de", "sw"], "auc": [0.9, 0.8, 0.7]}),
        ("retrieval", "per_language"): pd.DataFrame({"lang": ["de"], "retrieval_acc": [0.4]}),
        ("metrics", "compare"): pd.DataFrame({"lang": ["en", "de", "sw", "all"], "emt_reduction_pct": [50, 30, 10, 30],
                                              "toxprob_reduction": [0.5, 0.3, 0.1, 0.3]}),
    }
    for (stage, name), df in tables.items():
        d = pipe.stage_dir(stage)
        df.to_csv(d / f"{name}.csv", index=False)
        write_json(d / "stage.json", {"key": pipe.stage_key(stage), "summary": "", "outputs": {
            name: str((d / f"{name}.csv").relative_to(pipe.run_dir))}})
    summary, out = STAGE_FUNCTIONS["correlation"](pipe, pipe.stage_dir("correlation"))
    signals = pd.read_csv(pipe.run_dir / out["signals"]).set_index("lang")
    assert list(signals.index) == ["en", "de", "sw"]
    assert pd.isna(signals.loc["sw", "retrieval_acc"]) and signals.loc["sw", "key_ratio"] == 0.6
    assert "nan" in summary  # one language with retrieval: no correlation, said so
