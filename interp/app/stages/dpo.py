"""Stage 3: English preference tuning (TRL)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp.core.artifacts import file_sha256, read_json, stable_hash

if TYPE_CHECKING:
    from interp.app.pipeline import Pipeline


def weights_fingerprint(model_dir: str | Path) -> str:
    """Return a hash of the weight and config files of a ``save_pretrained`` directory (model or adapter)."""
    d = Path(model_dir)
    files = sorted(p for p in d.iterdir() if p.is_file() and (p.suffix == ".safetensors" or p.name in (
        "config.json", "adapter_config.json")))
    if not files:
        raise FileNotFoundError(f"{d}: no weights (*.safetensors) to fingerprint")
    return stable_hash([[p.name, file_sha256(p, n=None)] for p in files])


def stage_dpo(pipe: "Pipeline", d: Path) -> tuple[str, dict[str, Any]]:
    from detox_train import DPOTrainConfig, train_dpo

    c = pipe.config.dpo
    cfg = DPOTrainConfig.preset(c.preset, model=pipe.model_path(), output_dir=str(d / "train"),
                                seed=pipe.config.seed, data_root=pipe.config.data_root,
                                **{"bos": pipe.config.bos, **c.overrides})
    # An interrupted stage continues from its last checkpoint, but only one written by this same
    # config, data and base model; anything else trains afresh (the stage dir is emptied on a key change).
    out = Path(train_dpo(cfg, resume=True, on_mismatch="restart"))
    pipe.produced["dpo"] = weights_fingerprint(out)
    log = read_json(out / "training_log.json") if (out / "training_log.json").is_file() else {}
    evals = [e for e in log.get("evals", []) if "heldout_lm_loss_delta" in e]
    delta = evals[-1]["heldout_lm_loss_delta"] if evals else None
    extra = f"; held-out LM loss change {delta:+.3f} nats" if isinstance(delta, (int, float)) else ""
    return (f"DPO ({c.preset}) saved to {pipe.rel(out)}{extra}", {"model_dir": pipe.rel(out)})
