"""Preference algorithms: every one trains through TRL's own trainer and moves the policy toward the
chosen texts; the TRL configs carry each algorithm's documented defaults; the trl.experimental
ORPO/CPO API this relies on is present in the pinned TRL."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from detox_train.config import DPOTrainConfig
from detox_train.dpo import train_dpo
from detox_train.preference import ALGORITHMS, DEFAULT_COMPARISON, get_algorithm, trainer_args, trl_settings
from interp.core.configio import ConfigError
from test_dpo import tiny_config, toy_pairs


def test_the_pinned_trl_has_the_apis_used() -> None:
    import inspect

    import trl
    from trl.experimental.cpo import CPOConfig, CPOTrainer
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    lock = (Path(__file__).resolve().parents[1] / "requirements.lock").read_text()
    assert f"trl=={trl.__version__}" in lock  # the unstable experimental API is pinned
    for cls in (ORPOTrainer, CPOTrainer, trl.KTOTrainer, trl.DPOTrainer):
        params = inspect.signature(cls.__init__).parameters
        assert {"model", "args", "train_dataset", "eval_dataset", "processing_class", "peft_config",
                "callbacks"} <= set(params), cls
    assert "ref_model" in inspect.signature(trl.KTOTrainer.__init__).parameters
    assert {"simpo", "sigmoid"} <= set(CPOConfig.__dataclass_fields__["loss_type"].metadata["choices"])
    assert {"cpo_alpha", "simpo_gamma"} <= set(CPOConfig.__dataclass_fields__) and "beta" in ORPOConfig.__dataclass_fields__
    # every DPOTrainer loss type offered here is one TRL's DPOTrainer knows
    src = inspect.getsource(trl.DPOTrainer)
    for a in ALGORITHMS.values():
        if a.trainer == "dpo":
            assert f'loss_type == "{a.defaults["loss_type"][0]}"' in src, a.name


def test_configs_carry_each_algorithms_defaults(tmp_path: Path) -> None:
    base = DPOTrainConfig(output_dir=str(tmp_path), sft_weight=0.5)
    args = trainer_args(base.replace(algorithm="robust"), "cpu", has_eval=True)
    assert type(args).__name__ == "DPOConfig" and args.loss_type == ["robust", "sft"] and args.label_smoothing == 0.1
    assert args.loss_weights == [1.0, 0.5] and args.beta == 0.1
    assert trainer_args(base.replace(algorithm="exo_pair"), "cpu", has_eval=True).label_smoothing == 1e-3
    simpo = trainer_args(base.replace(algorithm="simpo"), "cpu", has_eval=False)
    assert type(simpo).__name__ == "CPOConfig" and (simpo.loss_type, simpo.cpo_alpha, simpo.beta, simpo.simpo_gamma) == (
        "simpo", 0.0, 2.0, 0.5)
    kto = trainer_args(base.replace(algorithm="kto"), "cpu", has_eval=False)
    assert type(kto).__name__ == "KTOConfig" and kto.loss_type == "kto" and kto.desirable_weight == 1.0
    # the shared schedule reaches every trainer (paper: constant with warmup, RMSprop)
    for a in ("orpo", "kto", "simpo", "ipo"):
        args = trainer_args(base.replace(algorithm=a), "cpu", has_eval=False)
        assert getattr(args.optim, "value", args.optim) == "rmsprop" and args.warmup_steps == 150
        assert args.bf16 is False and args.gradient_checkpointing is False
    over = base.replace(algorithm="simpo", algorithm_args={"simpo_gamma": 1.0})
    assert trl_settings(over)["simpo_gamma"] == 1.0
    with pytest.raises(ValueError, match="not CPOConfig fields"):
        trainer_args(base.replace(algorithm="simpo", algorithm_args={"label_smoothingg": 1}), "cpu", has_eval=False)
    with pytest.raises(ConfigError, match="algorithm 'dpo2' unknown"):
        DPOTrainConfig(algorithm="dpo2")
    assert set(DEFAULT_COMPARISON) <= set(ALGORITHMS) and len(DEFAULT_COMPARISON) == 7


def _margin(model_dir: Path, pairs) -> float:
    """Mean log p(chosen | prompt) - log p(rejected | prompt), summed over completion tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    m = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()

    def lp(prompt: str, comp: str) -> float:
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        c = tok(comp, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([p + c])
        with torch.no_grad():
            logp = m(input_ids=ids).logits[0, :-1].log_softmax(-1)
        return float(sum(logp[len(p) - 1 + j, t] for j, t in enumerate(c)))

    return sum(lp(x.prompt, x.chosen) - lp(x.prompt, x.rejected) for x in pairs) / len(pairs)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory) -> Path:
    from tiny_models import save_tiny

    return save_tiny("gpt2", tmp_path_factory.mktemp("pref_tiny") / "gpt2")


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_every_algorithm_trains_toward_the_chosen_text(algorithm: str, gpt2_dir: Path, tmp_path: Path) -> None:
    pairs = toy_pairs(16)
    before = _margin(gpt2_dir, pairs)
    cfg = tiny_config(gpt2_dir, tmp_path / algorithm, algorithm=algorithm, max_steps=3, eval_steps=3,
                      eval_fraction=0.25, heldout_texts=2)
    out = train_dpo(cfg, pairs=pairs)
    after = _margin(out, pairs)
    if algorithm == "discopop":
        # DiscoPOP is non-convex: at a zero log-ratio its gradient (tau 0.05) pushes the margin away from 0 in
        # either direction, so only "training moved the policy" is a property of the loss here.
        assert abs(after - before) > 0.1, (algorithm, before, after)
    else:
        assert after > before + 0.1, (algorithm, before, after)
    man = json.loads((out / "manifest.json").read_text())
    pref = man["preference"]
    algo = get_algorithm(algorithm)
    assert pref["algorithm"] == algorithm and pref["reference_model"] == algo.needs_reference
    assert pref["trainer"].rsplit(".", 1)[-1] == {"dpo": "DPOTrainer", "kto": "KTOTrainer", "orpo": "ORPOTrainer",
                                                  "cpo": "CPOTrainer"}[algo.trainer]
    assert pref["source"] and pref["settings"]["max_length"] == 32
    assert man["config"]["algorithm"] == algorithm
    held = [e for e in json.loads((out / "training_log.json").read_text())["evals"] if "heldout_lm_loss" in e]
    assert [e["step"] for e in held] == [0, 3]


def test_kto_sees_both_labels_from_its_first_batches(gpt2_dir: Path, tmp_path: Path) -> None:
    """unpair_preference_dataset gives all chosen rows, then all rejected ones, and KTOTrainer reads in
    order: without a shuffle the first half of training would only see desirable examples."""
    import copy

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from detox_train.dpo import to_dataset
    from detox_train.preference import build_trainer

    pairs = toy_pairs(64)
    cfg = tiny_config(gpt2_dir, tmp_path / "kto", algorithm="kto", per_device_train_batch_size=4)
    tok = AutoTokenizer.from_pretrained(str(gpt2_dir))
    model = AutoModelForCausalLM.from_pretrained(str(gpt2_dir))
    trainer = build_trainer(cfg, model=model, ref_model=copy.deepcopy(model).eval(),
                            args=trainer_args(cfg, "cpu", has_eval=False), train_dataset=to_dataset(pairs, tok),
                            eval_dataset=None, tokenizer=tok, peft_config=None, callbacks=[])
    labels = []
    for i, batch in enumerate(trainer.get_train_dataloader()):
        labels += [bool(x) for x in batch["label"]]
        if i == 3:
            break
    assert len(labels) == 16 and 0 < sum(labels) < 16, labels  # both labels among the first 4 of 32 batches
    # the KL completions are built after the shuffle: each row's KL completion is another row's completion
    ds = trainer.train_dataset
    assert ds["KL_completion_ids"][1] == ds["completion_ids"][0]
