"""Stage 1: the English toxicity probe and its transfer to the other languages."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp.core.artifacts import write_csv, write_json

if TYPE_CHECKING:
    from interp.app.pipeline import Pipeline


def stage_probe(pipe: "Pipeline", d: Path) -> tuple[str, dict[str, Any]]:
    from probes import load_probe_data, train_probe, transfer_report
    from probes.train import load_jigsaw_test

    c = pipe.config.probe
    bridge = pipe.base_model()
    records = load_probe_data(c.dataset, data_root=pipe.data_root, jigsaw_path=c.jigsaw_path)
    test = load_jigsaw_test(c.jigsaw_test_path) if c.jigsaw_test_path is not None else None
    probe, metrics = train_probe(bridge, records, test=test, solver=c.solver, layer=c.layer,
                                 pooling=c.pooling, max_examples=c.max_examples,
                                 seed=pipe.config.seed if c.seed is None else c.seed,
                                 random_init_baseline=True, test_fraction=c.test_fraction,
                                 progress=pipe.progress)
    probe_path = d / "probe.safetensors"
    probe.save(probe_path)
    write_json(d / "probe_metrics.json", metrics)
    prompts = [p for ps in pipe.eval_prompts(c.transfer_prompts, "all", salt="transfer").values() for p in ps]
    transfer = transfer_report(bridge, probe, prompts, progress=pipe.progress)
    write_csv(d / "probe_transfer.csv", transfer)
    acc = metrics.get("test", metrics).get("accuracy", float("nan"))
    base = metrics.get("random_init", {}).get("test", {}).get("accuracy", float("nan"))
    return (f"probe test accuracy {acc:.3f} (random-init model {base:.3f}); transfer AUC mean "
            f"{transfer['auc'].mean():.3f} over {len(transfer)} languages",
            {"probe": pipe.rel(probe_path), "metrics": pipe.rel(d / "probe_metrics.json"),
             "transfer": pipe.rel(d / "probe_transfer.csv")})
