"""Merge a trained LoRA/QLoRA adapter into a full-precision copy of its base model.

A QLoRA adapter was trained against an NF4 base; it is merged into the *full-precision* base
weights (fp32 or bf16), never into the 4-bit tensors, so the result is an ordinary HF model
directory that any tool can load. The merge is recorded in both manifests (the merged model's
``manifest.json`` names the adapter and base; the adapter run's manifest lists ``merged_to``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from interp.core.artifacts import MANIFEST_NAME, atomic_dir, file_sha256, read_json, write_json, write_manifest


def _adapter_base(adapter_dir: Path) -> str:
    cfg_path = adapter_dir / "adapter_config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{adapter_dir}: no adapter_config.json; expected a PEFT adapter directory "
                                "(written by `xdetox dpo train` with method lora or qlora)")
    from interp.core.artifacts import read_json

    cfg = read_json(cfg_path)
    if not isinstance(cfg, dict):
        raise ValueError(f"{cfg_path}: not an adapter config (expected a JSON object)")
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{cfg_path}: field base_model_name_or_path is empty; pass the base with --base")
    return str(base)


def merge_adapter(adapter_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                  base: str | None = None, dtype: Literal["float32", "bfloat16"] = "float32",
                  overwrite: bool = False) -> Path:
    """Return ``out_dir`` holding base + adapter merged into one full-precision model (plus tokenizer, manifest).

    ``base`` defaults to the adapter's ``base_model_name_or_path``. The base is always loaded
    unquantized in ``dtype``, even when the adapter was trained on a 4-bit base.
    """
    from peft import PeftModel
    from transformers import AutoTokenizer

    from interp.model.loading import load_hf_model

    adapter_dir = Path(adapter_dir).expanduser()
    out = Path(out_dir).expanduser()
    recorded_base = _adapter_base(adapter_dir) if base is None or (adapter_dir / "adapter_config.json").is_file() \
        else None
    base_name = base or recorded_base
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; choose another --out or pass --overwrite")

    model, tok = load_hf_model(base_name, dtype=dtype, device="cpu", quantization=None)
    from interp.model.loading import _load_peft

    peft_model = _load_peft(PeftModel, model, adapter_dir, base_name)
    merged = peft_model.merge_and_unload()
    if (adapter_dir / "tokenizer_config.json").is_file():
        tok = AutoTokenizer.from_pretrained(str(adapter_dir))

    run_manifest: dict[str, Any] = {}
    if (adapter_dir / MANIFEST_NAME).is_file():
        run_manifest = read_json(adapter_dir / MANIFEST_NAME)
    trained_4bit = run_manifest.get("method") == "qlora"

    # Build in a sibling temp dir and rename, so a crash never leaves a half-written model.
    with atomic_dir(out) as tmp:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        write_manifest(tmp, kind="dpo-merge", config={"base": base_name, "dtype": dtype}, seed=None,
                       model_id=str(out),
                       inputs={"adapter": str(adapter_dir.resolve()), "base": base_name,
                               "adapter_sha256": file_sha256(adapter_dir / "adapter_model.safetensors")
                               if (adapter_dir / "adapter_model.safetensors").is_file() else None},
                       extra={"merged_path": str(out.resolve()), "trained_on_4bit_base": trained_4bit,
                              "merged_into": f"full-precision {dtype} copy of the base"})
    if run_manifest:
        merged_to = [p for p in run_manifest.get("merged_to", []) if p != str(out.resolve())]
        run_manifest["merged_to"] = merged_to + [str(out.resolve())]
        write_json(adapter_dir / MANIFEST_NAME, run_manifest)
    return out


__all__ = ["merge_adapter"]
