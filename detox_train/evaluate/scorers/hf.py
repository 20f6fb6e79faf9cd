"""Any local HF sequence-classification model as a toxicity scorer (Detoxify, XLM-R toxicity ...).

The toxic probability is read from one output: ``toxic_label`` is a label index or a label name
(``config.id2label``); by default the label whose name contains "toxic" (and not "non"/"not"),
else index 1. ``activation`` is ``softmax`` (single-label heads) or ``sigmoid`` (multi-label
heads such as Detoxify).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch

from .base import ScoreResult, check_batch


def _pick_label(id2label: dict[int, str], toxic_label: int | str | None, where: str) -> int:
    labels = {int(i): str(n) for i, n in id2label.items()}
    if isinstance(toxic_label, int) or (isinstance(toxic_label, str) and toxic_label.isdigit()):
        idx = int(toxic_label)
        if idx not in labels:
            raise ValueError(f"{where}: toxic label index {idx} out of range; labels are {labels}")
        return idx
    if isinstance(toxic_label, str):
        for i, n in labels.items():
            if n.lower() == toxic_label.lower():
                return i
        raise ValueError(f"{where}: no label named {toxic_label!r}; labels are {labels} (use --toxic-label)")
    cands = [i for i, n in labels.items() if "toxic" in n.lower() and not n.lower().startswith(("non", "not"))]
    if cands:
        return cands[0]
    if 1 in labels:
        return 1
    raise ValueError(f"{where}: cannot tell which label is toxic among {labels}; pass toxic_label")


class HFClassifierScorer:
    """Scores texts with a local ``AutoModelForSequenceClassification`` directory."""

    def __init__(self, path: str | os.PathLike[str], *, toxic_label: int | str | None = None,
                 activation: Literal["softmax", "sigmoid"] = "softmax", batch_size: int = 32,
                 max_length: int = 512, device: str | None = None) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from interp.core.artifacts import file_sha256, stable_hash

        self.path = Path(path).expanduser()
        if not (self.path / "config.json").is_file():
            raise FileNotFoundError(f"{self.path}: not a Hugging Face model directory (no config.json); "
                                    "pass a local sequence-classification checkpoint with --hf-model DIR")
        if activation not in ("softmax", "sigmoid"):
            raise ValueError(f"activation must be 'softmax' or 'sigmoid', got {activation!r}")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = AutoModelForSequenceClassification.from_pretrained(str(self.path)).to(self.device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path))
        # Right padding keeps position ids of real tokens at 0..n-1 for absolute-position models.
        self.tokenizer.padding_side = "right"
        if self.tokenizer.pad_token is None and self.tokenizer.eos_token is not None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.label = _pick_label(self.model.config.id2label, toxic_label, str(self.path))
        self.activation, self.batch_size, self.max_length = activation, int(batch_size), int(max_length)
        weights = sorted(self.path.glob("*.safetensors")) or sorted(self.path.glob("*.bin"))
        wh = stable_hash([file_sha256(w) for w in weights]) if weights else "noweights"
        self.id = f"hf:{self.path.name}"
        self.version = f"{wh}:{self.label}:{activation}"

    @torch.no_grad()
    def probabilities(self, texts: list[str]) -> list[float]:
        """Return the toxic-label probability per text."""
        out: list[float] = []
        for s in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[s:s + self.batch_size], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(self.device)
            logits = self.model(**enc).logits.float()
            probs = logits.softmax(-1) if self.activation == "softmax" else logits.sigmoid()
            out.extend(probs[:, self.label].tolist())
        return out

    def score(self, texts: list[str], langs: list[str]) -> list[ScoreResult]:
        """Return one result per text (the toxic-label probability)."""
        check_batch(texts, langs)
        key = f"{self.id}@{self.version}"
        return [ScoreResult.ok(p, key) for p in self.probabilities(texts)]

    def __repr__(self) -> str:
        return f"HFClassifierScorer({str(self.path)!r}, label={self.label}, activation={self.activation!r})"
