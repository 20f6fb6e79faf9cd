"""The one LM-loss implementation (interp.model.lm_loss) against HF's own shifted loss, and its users agree."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from interp.model.lm_loss import continuation_nll, lm_loss, text_nll
from tiny_models import make_model, make_tokenizer

TEXTS = ["the quick brown fox", "Ich will nach Hause gehen, jetzt sofort", "我想回家", ""]


def _hf_nll(model, ids: list[int]) -> tuple[float, int]:
    """Summed NLL of ids[1:] given the prefix, from HF's labels loss (its own shift, mean over tokens)."""
    if len(ids) < 2:
        return 0.0, 0
    t = torch.tensor([ids])
    with torch.no_grad():
        loss = model(input_ids=t, labels=t).loss
    return float(loss) * (len(ids) - 1), len(ids) - 1


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_text_nll_is_hf_loss_after_the_start_token(family: str) -> None:
    tok = make_tokenizer()
    model = make_model(family, len(tok))
    model.train()  # scored in eval mode, then put back
    got = text_nll(model, tok, TEXTS, batch_size=3, max_length=6)
    assert model.training
    model.eval()
    for text, (nll, n) in zip(TEXTS, got):
        ids = [tok.eos_token_id] + tok(text, add_special_tokens=False)["input_ids"][:5]  # start token + 5 = 6
        want = _hf_nll(model, ids)
        assert n == want[1] and nll == pytest.approx(want[0], rel=1e-5, abs=1e-6)
    total = sum(x for x, _ in got) / sum(n for _, n in got)
    assert lm_loss(model, tok, TEXTS, max_length=6) == pytest.approx(total, rel=1e-6)


def test_continuation_nll_scores_only_the_continuation() -> None:
    tok = make_tokenizer()
    model = make_model("gpt2", len(tok))
    (nll, n), = continuation_nll(model, ["I want to"], [" go home"], tokenizer=tok)
    p = tok("I want to", add_special_tokens=False)["input_ids"]
    c = tok(" go home", add_special_tokens=False)["input_ids"]
    full, _ = _hf_nll(model, p + c)
    prefix, _ = _hf_nll(model, p)
    assert n == len(c) and nll == pytest.approx(full - prefix, rel=1e-5)


def test_users_share_the_implementation() -> None:
    from detox_train.compare_algorithms import per_text_losses
    from detox_train.dpo import lm_loss as dpo_lm_loss
    from detox_train.evaluate.metrics import continuation_nll as metrics_nll
    from interp.default_model.train import lm_loss_by_language

    assert dpo_lm_loss is lm_loss and metrics_nll is continuation_nll
    tok = make_tokenizer()
    model = make_model("gpt2", len(tok))
    losses, counts = per_text_losses(model, tok, TEXTS, 256)
    scored = text_nll(model, tok, TEXTS)
    assert counts.tolist() == [n for _, n in scored] and counts[-1] == 0 and losses[-1] == 0.0
    np.testing.assert_allclose(losses[:-1], [x / n for x, n in scored[:-1]], rtol=1e-6)
    assert lm_loss_by_language(model, tok, {"de": TEXTS[1:2], "en": TEXTS[:1]}, loss=lm_loss) == pytest.approx(
        {"de": lm_loss(model, tok, TEXTS[1:2]), "en": lm_loss(model, tok, TEXTS[:1])})
