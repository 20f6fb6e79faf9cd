"""Stage 0: the model under study (the embedded default is built on first use)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp.core.artifacts import write_json

if TYPE_CHECKING:
    from interp.app.pipeline import Pipeline


# ------------------------------------------------------------------ stages
def stage_model(pipe: "Pipeline", d: Path) -> tuple[str, dict[str, Any]]:
    from interp.model.loading import DEFAULT_MODEL_NAMES, load_model, model_fingerprint

    m = pipe.config.model
    if m.name in DEFAULT_MODEL_NAMES:
        from interp.model.loading import default_model_path

        path = str(default_model_path(m.recipe, pipe.config.data_root, progress=pipe.progress, seed=m.recipe_seed))
    else:
        path = m.name
    bridge = load_model(path, adapter=m.adapter, dtype=m.dtype, device=m.device)
    from interp.model.architecture import get_adapter

    a = get_adapter(bridge)
    info = {"path": path, "fingerprint": model_fingerprint(bridge), "family": a.family,
            "n_layers": a.n_layers, "d_model": a.d_model, "d_mlp": a.d_mlp}
    write_json(d / "model_info.json", info)
    pipe.models["base"] = pipe.apply_policy("base", bridge)
    pipe.produced["model"] = info["fingerprint"]
    return (f"{a.family} model {Path(path).name}: {a.n_layers} layers, d_model {a.d_model}, d_mlp {a.d_mlp}",
            {"model_info": pipe.rel(d / "model_info.json")})
