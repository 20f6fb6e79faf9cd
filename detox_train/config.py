"""DPO training configuration: one dataclass whose fields carry their help text, plus named presets.

Presets are named YAML files (``detox_train/presets/NAME.yaml``), never branches in the training
code. ``paper-full`` and ``paper-qlora`` follow the paper (METHOD.md stage 3); ``cpu-demo`` is a
gentle setting for the small embedded default model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from interp.core.configio import ConfigError, config_from_dict, config_to_dict, preset_file, read_config_file, save_config
from interp.core.configio import preset_names as names_in

Method = Literal["full", "lora", "qlora"]
Precision = Literal["auto", "fp32", "bf16"]
Optimizer = Literal["rmsprop", "adamw_torch", "sgd", "adafactor", "paged_adamw_8bit", "paged_adamw_32bit"]


@dataclass
class DPOTrainConfig:
    """Everything that determines a DPO run (with the seed, the result is reproducible).

    Fields that TRL's ``DPOConfig`` (or its ``TrainingArguments``) also has carry TRL's name and meaning.
    """

    #: Former names of fields now spelled as TRL spells them: YAML keys, --set keys and flags with the
    #: old name are refused with the new one (never silently ignored).
    renamed_fields: ClassVar[dict[str, str]] = {
        "optimizer": "optim", "batch_size": "per_device_train_batch_size",
        "grad_accum": "gradient_accumulation_steps", "num_epochs": "num_train_epochs"}

    # ---- model and adapter
    model: str = field(default="default", metadata={
        "help": "base model: local HF directory, cached hub name, or 'default' for the embedded model"})
    method: Method = field(default="full", metadata={
        "help": "full: train every weight; lora: LoRA adapters on a full-precision base; "
                "qlora: LoRA on a 4-bit NF4 + double-quant base with bf16 compute (bitsandbytes)"})
    lora_r: int = field(default=64, metadata={"help": "LoRA rank r (lora/qlora)"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha (lora/qlora)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA input (lora/qlora)"})
    lora_target_modules: list[str] | None = field(default=None, metadata={
        "help": "module names to adapt; null = every linear layer of the block, as the architecture "
                "adapter lists them (interp.model.architecture.get_adapter(model).lora_target_modules())"})
    # ---- data
    pairs: str = field(default="paradetox", metadata={
        "help": "preference pairs: 'paradetox', 'pplm' (needs pplm_path), 'onpolicy', or a JSONL file "
                "with prompt/chosen/rejected fields"})
    pplm_path: str | None = field(default=None, metadata={
        "help": "the paper's PPLM pairs JSONL (prompt_text/unpert_gen_text/pert_gen_text) for pairs='pplm'"})
    data_root: str | None = field(default=None, metadata={
        "help": "offline data folder (default: $XDETOX_DATA, then ../shared/data)"})
    bos: str = field(default="auto", metadata={
        "help": "BOS policy of the run's tokenization rule (interp.model.tokenization): auto (the model's own "
                "tokenizer), always or never"})
    paradetox_prompt: str = field(default="", metadata={
        "help": "shared prompt before every ParaDetox sentence ('' = none: the sentence is the whole "
                "completion, scored after the tokenizer's BOS/EOS token)"})
    max_pairs: int | None = field(default=None, metadata={
        "help": "use at most this many pairs (a seeded random subset); null = all"})
    onpolicy_prompts: int = field(default=256, metadata={
        "help": "pairs='onpolicy': number of English RTP-LX train-split prompts to sample from"})
    onpolicy_k: int = field(default=4, metadata={"help": "pairs='onpolicy': continuations sampled per prompt"})
    onpolicy_scorer: str = field(default="lexicon", metadata={
        "help": "pairs='onpolicy': name of a scorer from detox_train.evaluate (lower = less toxic)"})
    max_length: int = field(default=256, metadata={
        "help": "maximum prompt+completion length in TOKENS; longer pairs are dropped (counted in the manifest)"})
    max_prompt_length: int = field(default=64, metadata={
        "help": "maximum prompt length in TOKENS (the paper's limit; TRL 1.16 has no such option, so it is "
                "applied here: see long_prompts)"})
    long_prompts: Literal["drop", "truncate_left"] = field(default="drop", metadata={
        "help": "prompts over max_prompt_length: 'drop' the pair (see drop_long), or 'truncate_left' = the "
                "paper-era TRL keep_end rule: only when prompt + longer response (+EOS) exceeds max_length, keep "
                "the prompt's last max_prompt_length tokens (its BOS counted inside), then cut the responses to "
                "max_length - max_prompt_length; the manifest counts each (n_pairs.dropped_prompt_too_long, "
                "n_pairs.prompt_truncated_left, n_pairs.response_truncated)"})
    drop_long: bool = field(default=True, metadata={
        "help": "true: drop pairs over the token limits and report the count; false: stop with an error "
                "naming the first offending pair"})
    eval_fraction: float = field(default=0.05, metadata={
        "help": "share of pairs held out for DPO eval loss/margins (and early stopping)"})
    heldout_source: str = field(default="eval_chosen", metadata={
        "help": "neutral text for the held-out LM loss: 'eval_chosen' (chosen texts of the eval pairs, never "
                "trained on), 'gettext' (English gettext strings), or a path to a text file (one per line)"})
    heldout_texts: int = field(default=64, metadata={"help": "number of held-out neutral texts for the LM loss"})
    # ---- optimisation
    optim: Optimizer = field(default="rmsprop", metadata={
        "help": "optimizer name, as transformers' TrainingArguments.optim"})
    learning_rate: float = field(default=1e-5, metadata={"help": "peak learning rate"})
    per_device_train_batch_size: int = field(default=4, metadata={
        "help": "pairs per device per step (also the eval batch); the effective batch is this x "
                "gradient_accumulation_steps x the number of processes"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "gradient accumulation steps"})
    max_grad_norm: float = field(default=10.0, metadata={"help": "gradient clipping norm"})
    beta: float = field(default=0.1, metadata={"help": "DPO beta (sigmoid loss, summed response log-probs)"})
    sft_weight: float = field(default=0.0, metadata={
        "help": "weight of an extra SFT (NLL) term on the chosen completion (TRL loss_type ['sigmoid','sft']); "
                "0 = plain DPO"})
    algorithm: str = field(default="sigmoid", metadata={
        "help": "preference algorithm (TRL's trainers and losses; detox_train.preference.ALGORITHMS): sigmoid "
                "(the paper's DPO), ipo, hinge, robust, exo_pair, nca_pair, bco_pair, sppo_hard, apo_zero, "
                "discopop (DPOTrainer loss types), kto (KTOTrainer, unpaired from the same pairs), orpo, cpo, "
                "simpo (trl.experimental ORPO/CPO trainers)"})
    algorithm_args: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "overrides of the algorithm's TRL config keywords (e.g. {label_smoothing: 0.2} for robust, "
                "{simpo_gamma: 1.0} for simpo); the defaults come from each paper or the TRL docs"})
    warmup_steps: int = field(default=150, metadata={"help": "linear warmup steps, then a constant rate"})
    num_train_epochs: float = field(default=5.0, metadata={"help": "maximum number of epochs"})
    max_steps: int = field(default=-1, metadata={"help": "stop after this many optimizer steps (-1 = use epochs)"})
    eval_steps: int = field(default=25, metadata={"help": "evaluate (and checkpoint) every N steps; 0 = never"})
    early_stopping_patience: int | None = field(default=10, metadata={
        "help": "stop after this many evaluations without an eval-loss improvement; null = off"})
    save_steps: int | None = field(default=None, metadata={
        "help": "checkpoint every N steps (default: eval_steps, or 50 without eval); resume uses the last one"})
    save_total_limit: int | None = field(default=2, metadata={"help": "keep at most this many checkpoints"})
    logging_steps: int = field(default=5, metadata={"help": "log train metrics every N steps"})
    gradient_checkpointing: bool = field(default=False, metadata={
        "help": "recompute activations in backward (saves memory on large models, slower)"})
    # ---- run
    seed: int = field(default=0, metadata={"help": "seed for data order, splits, LoRA init and sampling"})
    output_dir: str = field(default="runs/dpo", metadata={"help": "where checkpoints and the final model go"})
    precision: Precision = field(default="auto", metadata={
        "help": "auto: bf16 mixed precision on a GPU that supports it, fp32 otherwise (never fp16 on CPU)"})
    device: str | None = field(default=None, metadata={
        "help": "cpu or cuda (default: cuda if visible; each accelerate process takes its own GPU)"})
    report_to: str = field(default="none", metadata={"help": "'none' (default) or 'wandb'/'tensorboard'"})
    num_threads: int = field(default=0, metadata={
        "help": "CPU runs: torch threads per process (0 = torch's default). 1 avoids OpenMP contention on a "
                "shared CPU (the cpu-demo ran 3x faster with 1 thread than with 2 on a busy 2-core machine)"})

    def __post_init__(self) -> None:
        checks = [
            (self.lora_r > 0, "lora_r must be > 0"),
            (0.0 <= self.lora_dropout < 1.0, "lora_dropout must be in [0, 1)"),
            (self.max_length > 0 and self.max_prompt_length > 0, "max_length and max_prompt_length must be > 0"),
            (self.max_prompt_length < self.max_length, "max_prompt_length must be smaller than max_length"),
            (0.0 <= self.eval_fraction < 1.0, "eval_fraction must be in [0, 1)"),
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (self.per_device_train_batch_size > 0 and self.gradient_accumulation_steps > 0,
             "per_device_train_batch_size and gradient_accumulation_steps must be > 0"),
            (self.beta > 0, "beta must be > 0"),
            (self.sft_weight >= 0, "sft_weight must be >= 0"),
            (self.max_steps != 0, "max_steps must be -1 (use num_train_epochs) or > 0"),
            (self.max_pairs is None or self.max_pairs > 0, "max_pairs must be > 0 or null"),
            (self.num_threads >= 0, "num_threads must be >= 0 (0 = torch's default)"),
        ]
        from detox_train.preference import ALGORITHMS

        checks.append((self.algorithm in ALGORITHMS,
                       f"algorithm {self.algorithm!r} unknown; choose one of {', '.join(ALGORITHMS)}"))
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"DPOTrainConfig: {msg}")
        if self.pairs == "pplm" and not self.pplm_path:
            raise ConfigError("DPOTrainConfig: pairs='pplm' needs pplm_path (the paper's JSONL file)")

    # ------------------------------------------------------------------ presets & I/O
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "DPOTrainConfig":
        """Return the named preset (``detox_train/presets/NAME.yaml``) with ``overrides`` applied."""
        data = preset_data(name)
        try:
            return config_from_dict(cls, {**data, **overrides})
        except ConfigError as e:
            raise ConfigError(f"DPO preset {name}: {e}") from e

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "DPOTrainConfig":
        """Return the config stored in YAML file ``path`` (a ``preset: NAME`` key starts from that preset)."""
        data = read_config_file(path)
        try:
            base = preset_data(str(data.pop("preset"))) if "preset" in data else {}
            return config_from_dict(cls, {**base, **data, **overrides})
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from e

    def to_yaml(self, path: str | Path) -> Path:
        """Write this config as YAML and return the path."""
        return save_config(self, path)

    def to_dict(self) -> dict[str, Any]:
        """Return the config as plain JSON types."""
        return config_to_dict(self)

    def replace(self, **changes: Any) -> "DPOTrainConfig":
        """Return a validated copy with ``changes``."""
        return config_from_dict(type(self), {**self.to_dict(), **changes})


PRESET_DIR = Path(__file__).parent / "presets"


def preset_data(name: str) -> dict[str, Any]:
    """Return the keys of DPO preset ``name`` (its YAML file), a ``preset: BASE`` key resolved first."""
    data = read_config_file(preset_file(PRESET_DIR, name, what="DPO preset"))
    base = data.pop("preset", None)
    return {**preset_data(str(base)), **data} if base is not None else data


def preset_names() -> list[str]:
    """Return the preset names."""
    return names_in(PRESET_DIR)


#: {name: keys} of the shipped presets, read from their YAML files.
PRESETS: dict[str, dict[str, Any]] = {name: preset_data(name) for name in preset_names()}


__all__ = ["DPOTrainConfig", "PRESETS", "preset_names", "preset_data"]
