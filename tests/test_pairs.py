"""Pair builders, token-length filter and pairs JSONL I/O (no training here)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from detox_train.pairs import (filter_pairs_by_tokens, onpolicy_pairs, paradetox_pairs, pplm_pairs,
                               read_pairs_jsonl, split_pairs, subsample, validate_pairs, write_pairs_jsonl)
from interp.core.artifacts import InputError
from interp.data.records import DataFormatError, PreferencePair
from tiny_models import make_model




def _pair(i: int, prompt: str = "I want to", chosen: str = " go home", rejected: str = " hit you") -> PreferencePair:
    return PreferencePair(id=f"p{i}", prompt=prompt, chosen=chosen, rejected=rejected, source="test")


# ----------------------------------------------------------------------------- JSONL I/O and errors
def test_jsonl_roundtrip(tmp_path: Path) -> None:
    pairs = [_pair(i, chosen=f" go home {i}") for i in range(3)]
    path = write_pairs_jsonl(tmp_path / "p.jsonl", pairs)
    back = read_pairs_jsonl(path)
    assert [(p.id, p.prompt, p.chosen, p.rejected, p.source) for p in back] == \
           [(p.id, p.prompt, p.chosen, p.rejected, p.source) for p in pairs]
    assert back[1].meta["line"] == 2 and back[1].meta["file"] == str(path)


def test_empty_pairs_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    with pytest.raises(DataFormatError, match=r"empty\.jsonl.*empty pairs file"):
        read_pairs_jsonl(path)
    with pytest.raises(ValueError, match="no preference pairs"):
        validate_pairs([])


def test_missing_field_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n"
                    + json.dumps({"prompt": "a", "chosen": "b"}) + "\n")
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2: field 'rejected': missing"):
        read_pairs_jsonl(path)
    path.write_text(json.dumps({"prompt": "a", "chosen": 3, "rejected": "c"}) + "\n")
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:1: field 'chosen': must be a string"):
        read_pairs_jsonl(path)
    path.write_text("{not json\n")
    with pytest.raises(InputError, match=r"bad\.jsonl:1: invalid JSON"):
        read_pairs_jsonl(path)
    path.write_text("[1]\n")
    with pytest.raises(InputError, match=r"bad\.jsonl:1: line is a JSON list, not an object"):
        read_pairs_jsonl(path)
    with pytest.raises(DataFormatError, match="not found"):
        read_pairs_jsonl(tmp_path / "nope.jsonl")


def test_chosen_equal_rejected_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "same.jsonl"
    path.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n"
                    + json.dumps({"prompt": "a", "chosen": "same", "rejected": "same"}) + "\n")
    with pytest.raises(DataFormatError, match=r"same\.jsonl:2: .*chosen == rejected"):
        read_pairs_jsonl(path)
    with pytest.raises(ValueError, match=r"pair p0.*chosen == rejected"):
        validate_pairs([_pair(0, chosen="x", rejected="x")])
    with pytest.raises(ValueError, match=r"duplicate pair id"):
        validate_pairs([_pair(0), _pair(0)])


# ----------------------------------------------------------------------------- token filter
def test_filter_counts_tokens_not_characters(tiny_tokenizer) -> None:
    tok = tiny_tokenizer
    words = "this is a nice day"   # in the tokenizer's training text: merged into few tokens
    rare = "龘靐齉爨"               # unseen CJK: one token per UTF-8 byte
    n_words, n_rare = (len(tok(s, add_special_tokens=False)["input_ids"]) for s in (words, rare))
    assert len(words) > len(rare) and n_words < n_rare       # the premise: chars and tokens disagree
    limit = (n_words + n_rare) // 2
    pairs = [_pair(0, prompt=words), _pair(1, prompt=rare)]
    kept, rep = filter_pairs_by_tokens(pairs, tok, max_length=200, max_prompt_length=limit)
    assert [p.id for p in kept] == ["p0"]
    assert (rep.n_in, rep.n_kept, rep.n_prompt_too_long, rep.n_too_long, rep.dropped_ids) == (2, 1, 1, 0, ["p1"])

    # Total length: prompt + completion + EOS must fit max_length (independent count).
    p = _pair(2, prompt="I want to", chosen=" go home now", rejected=" " + rare)
    n_full = max(len(tok(p.prompt + c, add_special_tokens=False)["input_ids"]) for c in (p.chosen, p.rejected)) + 1
    assert filter_pairs_by_tokens([p], tok, max_length=n_full, max_prompt_length=50)[1].n_kept == 1
    kept, rep = filter_pairs_by_tokens([p], tok, max_length=n_full - 1, max_prompt_length=50)
    assert (rep.n_kept, rep.n_too_long) == (0, 1)


def test_long_prompt_error_when_not_dropping(tiny_tokenizer) -> None:
    with pytest.raises(ValueError, match=r"pair p7.*prompt has \d+ tokens, more than max_prompt_length=2"):
        filter_pairs_by_tokens([_pair(7, prompt="I want to go home now")], tiny_tokenizer, 100, 2, drop=False)


def test_split_and_subsample_are_seeded() -> None:
    pairs = [_pair(i) for i in range(40)]
    tr, ev = split_pairs(pairs, 0.05, seed=3)
    assert len(ev) == 2 and len(tr) == 38 and not {p.id for p in tr} & {p.id for p in ev}
    assert split_pairs(pairs, 0.05, seed=3) == (tr, ev)
    assert split_pairs(pairs, 0.0, seed=3) == (pairs, [])
    sub = subsample(pairs, 10, seed=1)
    assert sub == subsample(pairs, 10, seed=1) and len(sub) == 10
    assert [int(p.id[1:]) for p in sub] == sorted(int(p.id[1:]) for p in sub)  # original order kept
    with pytest.raises(ValueError, match="too few"):
        split_pairs(pairs[:1], 0.5, seed=0)


# ----------------------------------------------------------------------------- builders
def test_paradetox_pairs_on_real_data(data_root: Path) -> None:
    from interp.data.sources import load_paradetox

    rows = load_paradetox(data_root)
    pairs = paradetox_pairs(data_root)
    first = next(r for r in rows if r.neutrals and r.neutrals[0].strip() != r.toxic.strip())
    p = next(p for p in pairs if p.meta["row"] == first.id)
    assert (p.prompt, p.chosen, p.rejected, p.source) == ("", first.neutrals[0], first.toxic, "paradetox")
    assert len(pairs) > 10_000 and all(p.chosen != p.rejected for p in pairs)
    assert paradetox_pairs(data_root, prompt="Comment:")[0].prompt == "Comment:"


def test_pplm_pairs_strip_repeated_prompt(tmp_path: Path) -> None:
    path = tmp_path / "pplm.jsonl"
    rows = [{"prompt_text": "The city", "unpert_gen_text": "The city is calm.", "pert_gen_text": "The city is vile."},
            {"prompt_text": "A man", "unpert_gen_text": " walked home.", "pert_gen_text": " yelled slurs."}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs, n_stripped = pplm_pairs(path)
    assert n_stripped == 1
    assert (pairs[0].prompt, pairs[0].chosen, pairs[0].rejected) == ("The city", " is calm.", " is vile.")
    assert (pairs[1].chosen, pairs[1].rejected) == (" walked home.", " yelled slurs.")


def test_onpolicy_pairs_pick_extremes_and_skip_ties(tiny_tokenizer) -> None:
    model = make_model("gpt2", len(tiny_tokenizer))
    score = lambda texts: [float(t.count("o") + 0.01 * len(t)) for t in texts]  # noqa: E731 - a toy scorer
    prompts = ["I want to", "the quick brown"]
    pairs = onpolicy_pairs(model, tiny_tokenizer, prompts, score, k=4, max_new_tokens=8, seed=5)
    assert pairs and all(p.source == "onpolicy" for p in pairs)
    for p in pairs:
        assert p.meta["score_gap"] > 0
        assert p.meta["score_gap"] == pytest.approx(p.meta["score_rejected"] - p.meta["score_chosen"])
        assert score([p.chosen])[0] == pytest.approx(p.meta["score_chosen"])
        assert score([p.rejected])[0] == pytest.approx(p.meta["score_rejected"])
    again = onpolicy_pairs(model, tiny_tokenizer, prompts, score, k=4, max_new_tokens=8, seed=5)
    assert [(p.chosen, p.rejected) for p in again] == [(p.chosen, p.rejected) for p in pairs]
    assert onpolicy_pairs(model, tiny_tokenizer, prompts[:1], lambda t: [0.0] * len(t), k=3, max_new_tokens=4) == []
    with pytest.raises(ValueError, match="k must be >= 2"):
        onpolicy_pairs(model, tiny_tokenizer, prompts, score, k=1)


def test_onpolicy_scores_are_the_min_and_max_of_the_samples(tiny_tokenizer) -> None:
    """Independent check: regenerate the k samples with the same seed and compare extremes."""
    model = make_model("gpt2", len(tiny_tokenizer))
    seen: list[list[str]] = []

    def score(texts: list[str]) -> list[float]:
        seen.append(list(texts))
        return [float(len(t)) for t in texts]

    pairs = onpolicy_pairs(model, tiny_tokenizer, ["I want to"], score, k=5, max_new_tokens=6, seed=0)
    lengths = [len(t) for t in seen[0]]
    if pairs:
        assert pairs[0].meta["score_chosen"] == min(lengths) and pairs[0].meta["score_rejected"] == max(lengths)
    else:
        assert min(lengths) == max(lengths)
    assert torch.is_grad_enabled()
