"""The architecture adapter: the one place that knows where each model family keeps its MLP.

Every analysis speaks this vocabulary only (value vectors, key vectors, activation hook, final
norm, W_U, LoRA targets). Nothing else in the project branches on model names or families.

Where a family keeps its parts is *derived* from TransformerLens 4's own component mapping
(``bridge.adapter.component_mapping``: ``blocks`` -> ``mlp`` -> ``in``/``gate``/``out``,
``ln_final``, ``unembed``), so any architecture TransformerLens bridges and that has a dense MLP
works without a table entry. :data:`OVERRIDES` holds the few facts the mapping lacks (the
Cohere logit scale, our BOS policy for GPT-2); :data:`FAMILIES` documents the paper's families
and is what the derivation must reproduce for them (tests/test_architecture.py). A FAMILIES
entry is used directly only for a model the derivation cannot serve (no bridge, no dense MLP).

The substrate (one way in): the library reads and edits a model through the HF modules this
adapter returns (``unwrap`` strips TransformerBridge wrappers through TransformerLens's public
``original_component``), with plain torch hooks on them; those modules run whether or not the
bridge's wrappers are in place, so the fast paths may swap the wrappers out
(``interp.neurons.activations.bare_modules``). The bridge's hook vocabulary (``blocks.{l}.mlp.hook_post``,
:meth:`ModelAdapter.hook_name`) is the user's way in: any hook there keeps the bridge running as
built (``interp.neurons.activations.bridge_hooks_active``, the one rule). Only TransformerLens's public API
is used (tests/test_substrate.py scans the tree). :func:`get_adapter` measures a model once
(cached per HF model, re-measured when its module structure changes); weights are read live.

Conventions (see docs/METHOD.md): neuron ``(l, i)`` is unit ``i`` of layer ``l``'s MLP; its
activation is the MLP hidden value after the nonlinearity (for gated MLPs ``act(gate) * up``),
which is exactly the input of the down projection; its value vector ``v_i`` is the ``i``-th
column of the down projection viewed as a map ``d_mlp -> d_model``, so ``mlp_out = sum_i m_i v_i``.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, replace
from typing import Any, Iterator

import torch
from jaxtyping import Float
from torch import Tensor, nn


@dataclass(frozen=True)
class FamilySpec:
    """Where one model family keeps its parts, as attribute paths from the HF CausalLM root."""

    family: str
    model_types: tuple[str, ...]          # HF ``config.model_type`` values served by this spec
    example: str                          # a real checkpoint of the family
    layers: str                           # path to the ModuleList of blocks
    w_in: str                             # up projection, relative to a block
    w_gate: str | None                    # gate projection (gated MLPs) or None
    w_out: str                            # down projection, relative to a block
    out_is_conv1d: bool                   # GPT-2 Conv1D stores [d_in, d_out]; Linear stores [d_out, d_in]
    final_norm: str
    unembed: str
    logit_scale_attr: str | None          # config attribute multiplied into the logits
    lora_targets: tuple[str, ...]         # every linear layer of the block
    prepends_bos: bool                    # whether the family's released tokenizers prepend BOS (documentation;
                                          # interp.model.tokenization reads the tokenizer itself)
    logit_softcap: float | None = None    # Gemma-2 style cap*tanh(logits/cap) after the unembedding
    # --- encoder (post-LN) support; the defaults describe the decoder families above ---
    hook: str = "blocks.{layer}.mlp.hook_post"   # TransformerBridge hook carrying the activations
    generative: bool = True               # False: no causal LM head, so no greedy decoding / DPO / sampling
    auto_class: str = "AutoModelForCausalLM"     # transformers Auto class that loads a checkpoint
    bridge_architecture: str | None = None       # TransformerBridge adapter to use (None: config.architectures[0])
    post_ln: str | None = None            # post-LN: the LayerNorm right after the MLP residual add (per block)
    appends_eos: bool = False             # whether inputs end with EOS/SEP (encoders: <s> ... </s>)

    @property
    def is_encoder(self) -> bool:
        """Whether the family is a bidirectional encoder (no generation)."""
        return not self.generative


class GenerationUnsupportedError(ValueError):
    """A stage that decodes tokens was asked to run on an encoder family."""


def require_generation(spec: "FamilySpec", stage: str) -> None:
    """Refuse ``stage`` (it decodes tokens) on an encoder family, naming the stage and the family."""
    if not spec.generative:
        raise GenerationUnsupportedError(
            f"{stage} needs greedy/sampled generation, which the {spec.family!r} family (a bidirectional "
            f"post-LN encoder, model_type {'/'.join(spec.model_types)}) cannot do. Use the prompt-position "
            "version instead (activation filter / key activations over prompt tokens: positions='prompt'; "
            "the `encoder-analysis` preset runs every stage that applies to encoders)")


def _post_ln_encoder(family: str, model_types: tuple[str, ...], example: str, root: str,
                     bridge_architecture: str) -> FamilySpec:
    """Return the spec of a post-LN encoder family whose HF modules sit under ``<root>.`` (BERT, XLM-R)."""
    return FamilySpec(
        family=family, model_types=model_types, example=example,
        layers=f"{root}.encoder.layer", w_in="intermediate.dense", w_gate=None, w_out="output.dense",
        out_is_conv1d=False, final_norm=f"{root}.encoder.layer.{{last}}.output.LayerNorm",
        unembed=f"{root}.embeddings.word_embeddings", logit_scale_attr=None,
        lora_targets=("query", "key", "value", "dense"), prepends_bos=True,
        hook="blocks.{layer}.mlp.out.hook_in", generative=False, auto_class="AutoModelForMaskedLM",
        bridge_architecture=bridge_architecture, post_ln="output.LayerNorm", appends_eos=True,
    )


FAMILIES: dict[str, FamilySpec] = {
    "gpt2": FamilySpec(
        family="gpt2", model_types=("gpt2",), example="ai-forever/mGPT",
        layers="transformer.h", w_in="mlp.c_fc", w_gate=None, w_out="mlp.c_proj",
        out_is_conv1d=True, final_norm="transformer.ln_f", unembed="lm_head",
        logit_scale_attr=None, lora_targets=("c_attn", "c_proj", "c_fc"), prepends_bos=False,
    ),
    "bloom": FamilySpec(
        family="bloom", model_types=("bloom",), example="bigscience/bloom-1b7",
        layers="transformer.h", w_in="mlp.dense_h_to_4h", w_gate=None, w_out="mlp.dense_4h_to_h",
        out_is_conv1d=False, final_norm="transformer.ln_f", unembed="lm_head",
        logit_scale_attr=None,
        lora_targets=("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
        prepends_bos=False,
    ),
    "llama": FamilySpec(
        family="llama", model_types=("llama",), example="meta-llama/Meta-Llama-3-8B",
        layers="model.layers", w_in="mlp.up_proj", w_gate="mlp.gate_proj", w_out="mlp.down_proj",
        out_is_conv1d=False, final_norm="model.norm", unembed="lm_head", logit_scale_attr=None,
        lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        prepends_bos=True,
    ),
    "cohere": FamilySpec(
        family="cohere", model_types=("cohere",), example="CohereForAI/aya-23-8B",
        layers="model.layers", w_in="mlp.up_proj", w_gate="mlp.gate_proj", w_out="mlp.down_proj",
        out_is_conv1d=False, final_norm="model.norm", unembed="lm_head", logit_scale_attr="logit_scale",
        lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        prepends_bos=True,
    ),
    # Post-LN encoders (BERT, multilingual-e5, XLM-R and the classifiers built on it). The MLP has no
    # module of its own: W_in is intermediate.dense and W_out is output.dense, followed by the
    # residual add and output.LayerNorm. The "unembedding" is the tied word embedding matrix (e5
    # has no MLM head); final_norm is the last block's output LayerNorm ({last} = n_layers - 1).
    "bert": _post_ln_encoder("bert", ("bert",), "intfloat/multilingual-e5-small", "bert", "BertForMaskedLM"),
    "xlm-roberta": _post_ln_encoder("xlm-roberta", ("xlm-roberta", "roberta"), "FacebookAI/xlm-roberta-base",
                                    "roberta", "RobertaForMaskedLM"),
}


class UnsupportedArchitectureError(ValueError):
    """The model's architecture cannot be bridged, or has no dense MLP to read neurons from."""


# Facts the TransformerLens component mapping does not carry, per HF ``model_type``. Each one is
# tested (tests/test_architecture.py::test_override_*).
OVERRIDES: dict[str, dict[str, Any]] = {
    # mGPT's HF tokenizer adds no BOS and our runs use one policy for every stage (docs/METHOD.md,
    # "BOS"); TransformerLens's GPT-2 adapter defaults to prepending one.
    "gpt2": {"prepends_bos": False, "example": "ai-forever/mGPT"},
    # Cohere/Aya multiply the lm_head output by ``logit_scale`` outside any mapped component.
    "cohere": {"logit_scale_attr": "logit_scale", "example": "CohereForAI/aya-23-8B"},
    "cohere2": {"logit_scale_attr": "logit_scale", "example": "CohereForAI/aya-expanse-8b"},
    "bloom": {"example": "bigscience/bloom-1b7"},
    "llama": {"example": "meta-llama/Meta-Llama-3-8B"},
}


def _tl_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transformer-lens")
    except PackageNotFoundError:  # pragma: no cover - TL is a hard dependency
        return "?"


def supported_architectures() -> list[str]:
    """Return the HF causal-LM class names TransformerLens 4 can bridge (the candidates we serve)."""
    from transformer_lens.factories.architecture_adapter_factory import SUPPORTED_ARCHITECTURES

    return sorted(a for a in SUPPORTED_ARCHITECTURES if a.endswith(("ForCausalLM", "LMHeadModel")))


def supported_model_types() -> list[str]:
    """Return the HF ``model_type`` values of the paper's families (any bridged dense-MLP model works)."""
    return [t for spec in FAMILIES.values() for t in spec.model_types]


def _unsupported(where: str, what: str) -> UnsupportedArchitectureError:
    paper = ", ".join(f"{s.family} (model_type {'/'.join(s.model_types)}, e.g. {s.example})" for s in FAMILIES.values())
    return UnsupportedArchitectureError(
        f"{where + ': ' if where else ''}{what}. The MLP-neuron analyses need an architecture that "
        f"TransformerLens {_tl_version()} bridges and whose blocks have a dense MLP. Paper families: {paper}. "
        f"Causal LMs TransformerLens can bridge: {', '.join(supported_architectures())}"
    )


def spec_for_model_type(model_type: str, *, where: str = "") -> FamilySpec:
    """Return the documented spec of one of the paper's families (see :func:`spec_for_model` for any model)."""
    for spec in FAMILIES.values():
        if model_type in spec.model_types:
            return spec
    raise _unsupported(where, f"no documented family for model_type={model_type!r}")


def architecture_name(config: Any, model: nn.Module | None = None) -> str:
    """Return the HF class name TransformerLens selects its adapter by (e.g. ``LlamaForCausalLM``)."""
    if model is not None:
        return type(model).__name__
    archs = getattr(config, "architectures", None)
    if archs:
        return str(archs[0])
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(getattr(config, "model_type", "?"), "?")


def tl_adapter_for_config(config: Any, *, architecture: str | None = None, where: str = "",
                          dtype: torch.dtype = torch.float32) -> Any:
    """Return TransformerLens's ``ArchitectureAdapter`` for an HF config, or a clear error listing what is supported."""
    from transformer_lens.factories.architecture_adapter_factory import ArchitectureAdapterFactory
    from transformer_lens.model_bridge.sources import build_bridge_config_from_hf

    arch = architecture or architecture_name(config)
    model_type = getattr(config, "model_type", "?")
    if arch not in supported_architectures():
        raise _unsupported(where, f"TransformerLens cannot bridge architecture {arch!r} (model_type {model_type!r})")
    try:
        cfg = build_bridge_config_from_hf(config, arch, getattr(config, "_name_or_path", "") or arch, dtype)
        return ArchitectureAdapterFactory.select_architecture_adapter(cfg)
    except (ValueError, AttributeError, TypeError, KeyError) as e:
        raise _unsupported(where, f"TransformerLens could not build an adapter for {arch!r}: {e}") from e


def spec_from_tl_adapter(tl_adapter: Any, config: Any, *, model: nn.Module | None = None,
                         where: str = "") -> FamilySpec:
    """Build a :class:`FamilySpec` from TransformerLens's component mapping, then apply :data:`OVERRIDES`.

    ``blocks`` gives the layer list; its ``mlp`` component's ``in``/``gate``/``out`` linears give
    W_in, the gate and W_out (``mlp.hook_post`` is the input of ``out``: the neuron activation);
    ``ln_final`` and ``unembed`` give the final norm and W_U; every linear of a block is a LoRA
    target. Whether W_out is a GPT-2 ``Conv1D`` is read off the module when ``model`` is given.
    """
    from transformer_lens.model_bridge.generalized_components import LinearBridge

    model_type = str(getattr(config, "model_type", "?"))
    arch = getattr(tl_adapter.cfg, "architecture", None) or architecture_name(config, model)
    mapping = tl_adapter.get_component_mapping()
    blocks = mapping.get("blocks")
    mlp = getattr(blocks, "submodules", {}).get("mlp") if blocks is not None else None
    parts = getattr(mlp, "submodules", {}) if mlp is not None else {}
    if blocks is None or not isinstance(parts.get("in"), LinearBridge) or not isinstance(parts.get("out"), LinearBridge):
        raise _unsupported(where, f"TransformerLens bridges {arch!r} but its blocks have no dense MLP "
                                  "(blocks.mlp with in/out linears; mixture-of-experts and state-space blocks "
                                  "have no single W_out to read value vectors from)")
    for key in ("ln_final", "unembed"):
        if key not in mapping:
            raise _unsupported(where, f"TransformerLens's mapping of {arch!r} has no {key!r}")
    prefix = f"{mlp.name}." if mlp.name else ""

    def linears(comp: Any) -> list[str]:
        out: list[str] = []
        for sub in getattr(comp, "submodules", {}).values():
            if isinstance(sub, LinearBridge) and sub.name:
                out.append(str(sub.name).split(".")[-1])
            out += linears(sub)
        return out

    w_out = prefix + parts["out"].name
    conv1d = False
    targets = list(dict.fromkeys(linears(blocks)))
    if model is not None:
        first = _get(model, str(blocks.name))[0]
        conv1d = _is_conv1d(_get(first, w_out))
        # Joint-QKV bridges add q/k/v views that are not modules of the HF block: not LoRA targets.
        present = set(_hf_child_names(first))
        targets = [t for t in targets if t in present]
    cap = getattr(tl_adapter.cfg, "output_logits_soft_cap", None)
    spec = FamilySpec(
        family=model_type, model_types=(model_type,), example=arch, layers=str(blocks.name),
        w_in=prefix + parts["in"].name,
        w_gate=prefix + parts["gate"].name if isinstance(parts.get("gate"), LinearBridge) else None,
        w_out=w_out, out_is_conv1d=conv1d, final_norm=str(mapping["ln_final"].name),
        unembed=str(mapping["unembed"].name), logit_scale_attr=None,
        lora_targets=tuple(targets),
        prepends_bos=bool(getattr(tl_adapter.cfg, "default_prepend_bos", True)),
        logit_softcap=float(cap) if cap is not None and float(cap) > 0 else None,
    )
    return replace(spec, **OVERRIDES.get(model_type, {}))


_SPECS: "weakref.WeakKeyDictionary[nn.Module, FamilySpec]" = weakref.WeakKeyDictionary()


def spec_for_model(model: Any, *, where: str = "") -> FamilySpec:
    """Return the spec of a loaded model (bridge, PeftModel or HF model), derived from TransformerLens."""
    hf = hf_model_of(model)
    if hf in _SPECS:
        return _SPECS[hf]
    encoder = _encoder_spec(getattr(hf.config, "model_type", "?"))
    if encoder is not None:
        _SPECS[hf] = encoder
        return encoder
    try:
        tl_adapter = getattr(model, "adapter", None)
        if tl_adapter is None or not hasattr(tl_adapter, "get_component_mapping"):
            dtype = next(hf.parameters()).dtype
            tl_adapter = tl_adapter_for_config(hf.config, architecture=type(hf).__name__,
                                               where=where or type(hf).__name__,
                                               dtype=dtype if dtype.is_floating_point else torch.float32)
        spec = spec_from_tl_adapter(tl_adapter, hf.config, model=hf, where=where or type(hf).__name__)
    except UnsupportedArchitectureError:
        spec = _table_spec(getattr(hf.config, "model_type", "?"))
        if spec is None:
            raise
    _SPECS[hf] = spec
    return spec


def _table_spec(model_type: str) -> FamilySpec | None:
    """Return an explicit :data:`FAMILIES` entry for a model the derivation cannot serve, if there is one."""
    return next((s for s in FAMILIES.values() if model_type in s.model_types), None)


def _encoder_spec(model_type: str) -> FamilySpec | None:
    """Return the table's encoder entry for ``model_type``: an override of the derivation, since
    TransformerLens's encoder mapping lacks the post-LN facts and its ``mlp.hook_post`` never fires."""
    spec = _table_spec(model_type)
    return spec if spec is not None and spec.is_encoder else None


def auto_class_for(config: Any) -> str:
    """Return the transformers Auto class that loads ``config``'s checkpoint for the analyses."""
    encoder = _encoder_spec(getattr(config, "model_type", "?"))
    return encoder.auto_class if encoder is not None else "AutoModelForCausalLM"


def check_supported(config: Any, *, where: str = "") -> None:
    """Fail early, before loading weights, when the analyses cannot serve ``config``'s architecture."""
    if _encoder_spec(getattr(config, "model_type", "?")) is not None:
        return
    try:
        spec_from_tl_adapter(tl_adapter_for_config(config, where=where), config, where=where)
    except UnsupportedArchitectureError:
        if _table_spec(getattr(config, "model_type", "?")) is None:
            raise


def hf_model_of(model: Any) -> nn.Module:
    """Return the HF CausalLM module behind a TransformerBridge, a PeftModel or an HF model."""
    if hasattr(model, "original_model") and isinstance(getattr(model, "original_model"), nn.Module):
        model = model.original_model
    if hasattr(model, "get_base_model") and hasattr(model, "peft_config"):
        model = model.get_base_model()
    if not isinstance(model, nn.Module) or not hasattr(model, "config"):
        raise TypeError(f"expected a TransformerBridge, PeftModel or HF model, got {type(model).__name__}")
    return model


def _bridge_component_class() -> type:
    from transformer_lens.model_bridge.generalized_components.base import GeneralizedComponent

    return GeneralizedComponent


def unwrap(mod: nn.Module) -> nn.Module:
    """Strip TransformerBridge wrappers, returning the HF module that owns the parameters.

    Uses the public ``GeneralizedComponent.original_component`` property (TransformerLens 4).
    """
    component = _bridge_component_class()
    while isinstance(mod, component) and mod.original_component is not None:
        mod = mod.original_component
    return mod


def _is_conv1d(mod: nn.Module) -> bool:
    """Whether a (possibly bridged or LoRA-wrapped) layer is a GPT-2 ``Conv1D`` ([d_in, d_out] storage)."""
    mod = unwrap(mod)
    if hasattr(mod, "base_layer"):
        mod = unwrap(mod.base_layer)
    return type(mod).__name__ == "Conv1D"


def _hf_child_names(mod: nn.Module) -> Iterator[str]:
    """Yield the names of every module under ``mod`` in the HF tree (bridge wrappers' own parts skipped)."""
    for name, child in unwrap(mod).named_children():
        yield name
        yield from _hf_child_names(child)


def _get(root: nn.Module, path: str) -> nn.Module:
    mod: Any = root
    for part in path.split("."):
        mod = mod[int(part)] if part.isdigit() else getattr(mod, part)
    return mod


def _dense_weight(mod: nn.Module) -> Tensor:
    """Return a layer's weight as a dense tensor, dequantizing bitsandbytes 4-bit storage."""
    w = mod.weight
    if type(w).__name__ == "Params4bit":
        import bitsandbytes.functional as bnbf

        return bnbf.dequantize_4bit(w.data, w.quant_state)
    return w


def effective_weight(mod: nn.Module) -> Float[Tensor, "..."]:
    """Return a layer's weight as the forward pass uses it, active unmerged LoRA deltas included."""
    mod = unwrap(mod)
    if hasattr(mod, "base_layer") and hasattr(mod, "get_delta_weight"):
        w = _dense_weight(unwrap(mod.base_layer))
        if not getattr(mod, "merged", False) and not getattr(mod, "disable_adapters", False):
            for name in mod.active_adapters:
                if name in getattr(mod, "lora_A", {}):
                    w = w + mod.get_delta_weight(name).to(w.dtype)
        return w
    return _dense_weight(mod)


class ModelAdapter:
    """Reads an MLP-neuron view (value/key vectors, hooks, norm, W_U) off a loaded model."""

    def __init__(self, model: Any, *, layout: "_Layout | None" = None) -> None:
        self.model = model
        self.hf_model = hf_model_of(model)
        if layout is None:
            layout = _measure_layout(model)
        self.layout = layout
        self.spec = layout.spec
        self.family = self.spec.family
        self.n_layers: int = layout.n_layers
        self.d_model, self.d_mlp = layout.d_model, layout.d_mlp

    # ---------------------------------------------------------------- modules
    def block(self, layer: int) -> nn.Module:
        """Return block ``layer`` (range-checked)."""
        if not 0 <= layer < self.n_layers:
            raise IndexError(f"layer {layer} out of range: the model has {self.n_layers} layers (0..{self.n_layers - 1})")
        return _get(self.hf_model, self.spec.layers)[layer]

    def out_proj(self, layer: int) -> nn.Module:
        """Return the down projection of ``layer``; its *input* is the neuron activation."""
        return _get(self.block(layer), self.spec.w_out)

    def in_proj(self, layer: int) -> nn.Module:
        """Return the up projection (W_in) of ``layer``."""
        return _get(self.block(layer), self.spec.w_in)

    def gate_proj(self, layer: int) -> nn.Module | None:
        """Return the gate projection of ``layer``, or None for non-gated MLPs."""
        return _get(self.block(layer), self.spec.w_gate) if self.spec.w_gate else None

    def final_norm(self) -> nn.Module:
        """Return the final norm applied before the unembedding."""
        return _get(self.hf_model, self.spec.final_norm.replace("{last}", str(self.n_layers - 1)))

    def post_ln(self, layer: int) -> nn.Module | None:
        """Return the LayerNorm right after layer ``layer``'s MLP residual add (post-LN families), else None."""
        return _get(self.block(layer), self.spec.post_ln) if self.spec.post_ln else None

    def hook_name(self, layer: int) -> str:
        """Return the TransformerBridge hook that carries layer ``layer``'s neuron activations."""
        self.block(layer)
        return self.spec.hook.format(layer=layer)

    # ---------------------------------------------------------------- weights
    def _rows(self, mod: nn.Module, conv1d: bool, fan_in_is_mlp: bool) -> Tensor:
        """Return the weight as [d_mlp, d_model] rows, whatever its storage orientation."""
        w = effective_weight(mod)
        # Linear stores [out, in]; Conv1D stores [in, out].
        if conv1d:
            w = w.T
        # now [out, in]; W_out maps d_mlp -> d_model, so transpose it to [d_mlp, d_model].
        return w.T if fan_in_is_mlp else w

    @torch.no_grad()
    def value_vectors(self, layers: list[int] | None = None) -> Float[Tensor, "n_layers d_mlp d_model"]:
        """Return stacked value vectors (rows of W_out) for ``layers`` (all by default)."""
        layers = list(range(self.n_layers)) if layers is None else layers
        return torch.stack([self._rows(self.out_proj(l), self.spec.out_is_conv1d, True).float() for l in layers])

    @torch.no_grad()
    def key_vectors(self, layers: list[int] | None = None, *, part: str = "up"
                    ) -> Float[Tensor, "n_layers d_mlp d_model"]:
        """Return stacked key vectors for ``layers``: columns of W_in (``part="up"``, the default)
        or, for gated MLPs, of the gate projection (``part="gate"``). See :meth:`key_parts`."""
        if part == "gate":
            gates = self.gate_vectors(layers)
            if gates is None:
                raise ValueError(f"{self.family} has no gated MLP: its key is the up projection alone (part='up')")
            return gates
        if part != "up":
            raise ValueError(f"part must be 'up' or 'gate', got {part!r}")
        layers = list(range(self.n_layers)) if layers is None else layers
        return torch.stack([self._rows(self.in_proj(l), self.spec.out_is_conv1d, False).float() for l in layers])

    @torch.no_grad()
    def key_parts(self, layers: list[int] | None = None) -> dict[str, Float[Tensor, "n_layers d_mlp d_model"]]:
        """Return every part of the neurons' keys: ``{"up": ...}``, plus ``"gate"`` for gated MLPs.

        The method defines a gated neuron's key as both columns: ``m_i = act(x . gate_i) * (x . up_i)``.
        """
        out = {"up": self.key_vectors(layers)}
        if self.spec.w_gate is not None:
            out["gate"] = self.key_vectors(layers, part="gate")
        return out

    @torch.no_grad()
    def gate_vectors(self, layers: list[int] | None = None) -> Float[Tensor, "n_layers d_mlp d_model"] | None:
        """Return stacked gate vectors for gated MLPs (Llama, Cohere), else None."""
        if self.spec.w_gate is None:
            return None
        layers = list(range(self.n_layers)) if layers is None else layers
        return torch.stack([self._rows(self.gate_proj(l), False, False).float() for l in layers])

    @torch.no_grad()
    def vocab_vectors(self, layers: list[int] | None = None) -> Float[Tensor, "n_layers d_mlp d_model"]:
        """Return value vectors as the vocabulary projection reads them (``vocab_vectors @ W_U``).

        Pre-LN families: the raw value vectors (the paper's ``W_U v``, no final norm). Post-LN
        encoders: ``v`` is added to the residual right before the block's output LayerNorm, so the
        direction it moves the normalised stream is ``gamma * (v - mean(v)) / sigma``; with
        ``sigma > 0`` a common scale, ``gamma_l * (v - mean(v))`` is projected (centred, scaled by
        the downstream LayerNorm gains, bias left out as for W_U's bias). Equivalently: the
        layer's own LayerNorm applied to ``v`` alone, minus its bias, up to a positive factor.
        This is the LayerNorm's Jacobian at a state x, ``J v = gamma/s * (v_c - x_hat (x_hat . v_c)/n)``,
        with the state-dependent term ``-x_hat (x_hat . v_c)/n`` dropped (and the common ``1/s``):
        it depends on the token, is small when ``v`` is not aligned with the centred state, and
        keeping it would make the projection a per-token quantity. Checked against autograd's
        Jacobian at real residual states in ``tests/test_encoders.py``.
        """
        layers = list(range(self.n_layers)) if layers is None else layers
        V = self.value_vectors(layers)
        if not self.spec.post_ln:
            return V
        gains = torch.stack([effective_weight(self.post_ln(l)).float() for l in layers])   # [n, d_model]
        return (V - V.mean(-1, keepdim=True)) * gains[:, None, :].to(V.device)

    @property
    def logit_scale(self) -> float:
        """Return the factor the family multiplies into its logits (Cohere/Aya: 1/16).

        Read from the live module first (HF Cohere keeps ``self.logit_scale``; TransformerLens sets it
        to 1 when it folds the scale into ``lm_head`` while processing weights), then from the config.
        """
        attr = self.spec.logit_scale_attr
        if not attr:
            return 1.0
        value = getattr(self.hf_model, attr, None)
        if not isinstance(value, (int, float)):
            value = getattr(self.hf_model.config, attr, None)
        return 1.0 if value is None else float(value)

    def apply_logit_softcap(self, logits: Tensor) -> Tensor:
        """Apply the family's final logit soft cap (Gemma-2: ``cap * tanh(x / cap)``); identity otherwise.

        ``final_norm(resid) @ unembed_matrix() (+ unembed_bias())`` gives the logits before it. The cap
        is monotonic, so top-k token projections do not need it.
        """
        cap = self.spec.logit_softcap
        return logits if cap is None else cap * torch.tanh(logits / cap)

    @torch.no_grad()
    def unembed_matrix(self) -> Float[Tensor, "d_model d_vocab"]:
        """Return W_U with any logit scale folded in: logits = final_norm(resid) @ W_U (+ b_U)."""
        head = unwrap(_get(self.hf_model, self.spec.unembed))
        return effective_weight(head).float().T * self.logit_scale

    @torch.no_grad()
    def unembed_bias(self) -> Float[Tensor, "d_vocab"] | None:
        """Return the unembedding bias with the logit scale folded in, or None."""
        head = unwrap(_get(self.hf_model, self.spec.unembed))
        b = getattr(head, "bias", None)
        return None if b is None else b.float() * self.logit_scale

    def lora_target_modules(self) -> list[str]:
        """Return the names of every linear layer of a block, for LoRA's ``target_modules``."""
        return list(self.spec.lora_targets)

    def __repr__(self) -> str:
        return (f"ModelAdapter(family={self.family!r}, n_layers={self.n_layers}, "
                f"d_model={self.d_model}, d_mlp={self.d_mlp})")


@dataclass(frozen=True)
class _Layout:
    """What an adapter measures once per model: its spec, layer count and (d_model, d_mlp)."""

    spec: FamilySpec
    n_layers: int
    d_model: int
    d_mlp: int
    out0: nn.Module    # layer 0's down projection (unwrapped) the shapes were read from

    def is_current(self, hf: nn.Module) -> bool:
        """Return whether ``hf`` still has this layout's module structure.

        Weights are always read live (a disabled or merged LoRA is seen as it is); only the layer
        count and the shapes are cached. A swap of layer 0's down projection (PEFT injecting or
        merging a LoRA, ``merge_and_unload``) or of the block list makes the layout stale.
        """
        blocks = _get(hf, self.spec.layers)
        return len(blocks) == self.n_layers and unwrap(_get(blocks[0], self.spec.w_out)) is self.out0


def _measure_layout(model: Any) -> _Layout:
    """Return the layout of ``model``, reading layer 0's down projection weight once."""
    hf = hf_model_of(model)
    spec = spec_for_model(model)
    out0 = unwrap(_get(_get(hf, spec.layers)[0], spec.w_out))
    w = effective_weight(out0)
    d_model, d_mlp = (int(w.shape[1]), int(w.shape[0])) if spec.out_is_conv1d else (int(w.shape[0]), int(w.shape[1]))
    return _Layout(spec=spec, n_layers=len(_get(hf, spec.layers)), d_model=d_model, d_mlp=d_mlp, out0=out0)


# One layout per HF model, keyed weakly (the layout holds no reference to the model itself).
_LAYOUTS: "weakref.WeakKeyDictionary[nn.Module, _Layout]" = weakref.WeakKeyDictionary()


def get_adapter(model: Any) -> ModelAdapter:
    """Return the architecture adapter of ``model`` (bridge, ModelView, PeftModel or HF model).

    What the adapter measures (spec, layer count, shapes: layer 0's weights) is cached once per HF
    model, so a bridge, its PEFT wrapper and its views share it, and re-measured when the module
    structure changed (:meth:`_Layout.is_current`); weights are always read live. Call
    :func:`invalidate_adapter` after any other in-place surgery on the model.
    """
    if hasattr(model, "adapter_enabled") and hasattr(model, "model"):  # a ModelView: same weights
        model = model.model
    hf = hf_model_of(model)
    layout = _LAYOUTS.get(hf)
    if layout is None or not layout.is_current(hf):
        layout = _LAYOUTS[hf] = _measure_layout(model)
    return ModelAdapter(model, layout=layout)


def invalidate_adapter(model: Any) -> None:
    """Forget the cached adapter layout (and family spec) of ``model``; the next :func:`get_adapter` re-measures."""
    if hasattr(model, "adapter_enabled") and hasattr(model, "model"):
        model = model.model
    hf = hf_model_of(model)
    _LAYOUTS.pop(hf, None)
    _SPECS.pop(hf, None)
