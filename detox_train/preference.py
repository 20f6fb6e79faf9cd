"""Preference algorithms as one setting: TRL's own trainers and losses, never a hand-written loss.

``DPOTrainConfig.algorithm`` names one entry of :data:`ALGORITHMS`:

* TRL ``DPOTrainer`` loss types (paired, with a frozen reference): ``sigmoid`` (the paper), ``ipo``,
  ``hinge``, ``robust``, ``exo_pair``, ``nca_pair``, ``bco_pair``, ``sppo_hard``, ``apo_zero``,
  ``discopop``;
* TRL ``KTOTrainer`` (unpaired, with a reference): each pair gives one desirable example (the
  chosen text) and one undesirable example (the rejected text) with ``trl.unpair_preference_dataset``;
* ``trl.experimental`` ``ORPOTrainer`` (``orpo``) and ``CPOTrainer`` (``cpo``, and ``simpo`` =
  CPOTrainer with ``loss_type="simpo"``, ``cpo_alpha=0``), both reference-free. The experimental
  API is unstable: requirements.lock pins TRL and tests/test_preference.py covers it.

Each algorithm's hyperparameters come from its paper or TRL's documentation (``source``);
``algorithm_args`` overrides them. Everything that went into the TRL config is recorded in the
run manifest (:func:`preference_manifest`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

TrainerKind = Literal["dpo", "kto", "orpo", "cpo"]


@dataclass(frozen=True)
class Algorithm:
    """One preference algorithm: which TRL trainer, its defaults and where they come from."""

    name: str
    trainer: TrainerKind
    defaults: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def needs_reference(self) -> bool:
        """Whether the trainer compares against a frozen reference model."""
        return self.trainer in ("dpo", "kto")


def _dpo(name: str, source: str, **extra: Any) -> Algorithm:
    return Algorithm(name, "dpo", {"loss_type": [name], **extra}, source)


ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in [
    _dpo("sigmoid", "DPO (Rafailov et al. 2023), the paper's loss; beta from the config (paper 0.1)"),
    _dpo("ipo", "IPO (Azar et al. 2023); TRL uses beta as IPO's tau (TRL default 0.1) on length-averaged log-ratios"),
    _dpo("hinge", "SLiC hinge loss (Zhao et al. 2023) on the DPO log-ratio; beta from the config"),
    _dpo("robust", "rDPO (Chowdhury et al. 2024); label_smoothing = flip rate 0.1, as the TRL docs recommend",
         label_smoothing=0.1),
    _dpo("exo_pair", "EXO (Ji et al. 2024); label_smoothing = epsilon 1e-3, as the TRL docs recommend "
         "(0 would give log 0)", label_smoothing=1e-3),
    _dpo("nca_pair", "NCA (Chen et al. 2024), pairwise; beta from the config"),
    _dpo("bco_pair", "BCO (Jung et al. 2024), pairwise; beta from the config"),
    _dpo("sppo_hard", "SPPO (Wu et al. 2024), hard-label variant; beta from the config"),
    _dpo("apo_zero", "APO-zero (D'Oosterlinck et al. 2024): raises chosen, lowers rejected likelihood"),
    _dpo("discopop", "DiscoPOP (Lu et al. 2024); discopop_tau 0.05 as the paper recommends", discopop_tau=0.05),
    Algorithm("kto", "kto", {"loss_type": "kto", "desirable_weight": 1.0, "undesirable_weight": 1.0},
              "KTO (Ethayarajh et al. 2024), unpaired from the same pairs (equal desirable/undesirable counts, so "
              "weights 1.0: the paper's lambda_D n_D / lambda_U n_U in [1, 4/3]); beta from the config (TRL 0.1)"),
    Algorithm("orpo", "orpo", {}, "ORPO (Hong et al. 2024), reference-free; beta = the paper's lambda, 0.1 (TRL "
              "default), taken from the config's beta"),
    Algorithm("cpo", "cpo", {"loss_type": "sigmoid", "cpo_alpha": 1.0},
              "CPO (Xu et al. 2024), reference-free; BC weight cpo_alpha 1.0 (TRL default); beta from the config"),
    Algorithm("simpo", "cpo", {"loss_type": "simpo", "cpo_alpha": 0.0, "simpo_gamma": 0.5, "beta": 2.0},
              "SimPO (Meng et al. 2024) via TRL CPOTrainer: loss_type simpo with cpo_alpha 0 (TRL docs); beta 2.0 "
              "(the paper's range 2.0-2.5); target margin simpo_gamma 0.5 (TRL default)"),
]}

#: The representative seven that ``xdetox experiment algorithms`` compares by default.
DEFAULT_COMPARISON: tuple[str, ...] = ("sigmoid", "ipo", "hinge", "robust", "kto", "orpo", "simpo")


def algorithm_names() -> list[str]:
    """Return every algorithm name, in a stable order."""
    return list(ALGORITHMS)


def get_algorithm(name: str) -> Algorithm:
    """Return the named algorithm, or raise a clear error listing the choices."""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown preference algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]


def trl_settings(config: Any) -> dict[str, Any]:
    """Return the algorithm-specific TRL config keywords for ``config`` (beta, loss, its parameters).

    Order of precedence: ``algorithm_args`` > the algorithm's own defaults > ``config.beta``. The
    SFT term (``sft_weight``) is a DPOTrainer loss component; other trainers have their own
    (ORPO's NLL term, CPO's BC term) and do not take it.
    """
    algo = get_algorithm(config.algorithm)
    kw: dict[str, Any] = {"beta": config.beta, **algo.defaults}
    if algo.trainer == "dpo" and config.sft_weight > 0:
        kw["loss_type"] = [*kw["loss_type"], "sft"]
        kw["loss_weights"] = [1.0, config.sft_weight]
    kw.update(dict(config.algorithm_args or {}))
    kw["max_length"] = config.max_length
    return kw


def _config_class(kind: TrainerKind) -> type:
    if kind == "dpo":
        from trl import DPOConfig
        return DPOConfig
    if kind == "kto":
        from trl import KTOConfig
        return KTOConfig
    if kind == "orpo":
        from trl.experimental.orpo import ORPOConfig
        return ORPOConfig
    from trl.experimental.cpo import CPOConfig
    return CPOConfig


def _trainer_class(kind: TrainerKind) -> type:
    if kind == "dpo":
        from trl import DPOTrainer
        return DPOTrainer
    if kind == "kto":
        from trl import KTOTrainer
        return KTOTrainer
    if kind == "orpo":
        from trl.experimental.orpo import ORPOTrainer
        return ORPOTrainer
    from trl.experimental.cpo import CPOTrainer
    return CPOTrainer


def trainer_args(config: Any, device: str, *, has_eval: bool) -> Any:
    """Return the TRL config object (DPOConfig, KTOConfig, ORPOConfig or CPOConfig) for ``config``."""
    from detox_train.training_args import training_kwargs

    algo = get_algorithm(config.algorithm)
    cls = _config_class(algo.trainer)
    extra = trl_settings(config)
    known = set(getattr(cls, "__dataclass_fields__", {}))
    unknown = sorted(k for k in extra if k not in known)
    if unknown:
        raise ValueError(f"algorithm_args: {unknown} are not {cls.__name__} fields for algorithm "
                         f"{algo.name!r}; see TRL's {cls.__name__} documentation")
    return cls(**training_kwargs(config, device, has_eval=has_eval), **extra)


def to_trainer_dataset(algo: Algorithm, dataset: Any, seed: int = 0) -> Any:
    """Return the dataset in the trainer's format: paired for DPO/ORPO/CPO, unpaired for KTO.

    ``unpair_preference_dataset`` emits all chosen rows, then all rejected rows, and KTOTrainer reads
    its train set in order (its KL term needs a fixed order), so an unshuffled run sees only
    desirable examples for its first half. The rows are shuffled (``seed``) here; KTOTrainer builds
    its mismatched KL completions afterwards, from the shuffled order.
    """
    if algo.trainer != "kto":
        return dataset
    from trl import unpair_preference_dataset

    return unpair_preference_dataset(dataset).shuffle(seed=seed)


def build_trainer(config: Any, *, model: Any, ref_model: Any, args: Any, train_dataset: Any, eval_dataset: Any,
                  tokenizer: Any, peft_config: Any, callbacks: Sequence[Any]) -> Any:
    """Return the TRL trainer for ``config.algorithm`` on the paired ``datasets`` (prompt/chosen/rejected)."""
    algo = get_algorithm(config.algorithm)
    cls = _trainer_class(algo.trainer)
    kw: dict[str, Any] = dict(model=model, args=args, train_dataset=to_trainer_dataset(algo, train_dataset, config.seed),
                              eval_dataset=(to_trainer_dataset(algo, eval_dataset, config.seed)
                                            if eval_dataset is not None else None),
                              processing_class=tokenizer, peft_config=peft_config, callbacks=list(callbacks))
    if algo.needs_reference:
        kw["ref_model"] = ref_model
    return cls(**kw)


def preference_manifest(config: Any, args: Any = None) -> dict[str, Any]:
    """Return what the manifest records about the algorithm: trainer, TRL keywords, their source."""
    import trl

    algo = get_algorithm(config.algorithm)
    settings = trl_settings(config)
    out = {"algorithm": algo.name, "trainer": _trainer_class(algo.trainer).__module__ + "." +
           _trainer_class(algo.trainer).__name__, "trl_version": trl.__version__,
           "reference_model": algo.needs_reference, "settings": settings, "source": algo.source,
           "sft_weight_applied": algo.trainer == "dpo" and config.sft_weight > 0,
           "overrides": dict(config.algorithm_args or {})}
    if args is not None:
        out["learning_rate"] = args.learning_rate
    return out


__all__ = ["Algorithm", "ALGORITHMS", "DEFAULT_COMPARISON", "algorithm_names", "get_algorithm", "trl_settings",
           "trainer_args", "build_trainer", "to_trainer_dataset", "preference_manifest"]
