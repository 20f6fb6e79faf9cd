"""The architecture adapter: the one place that knows where each model family keeps its MLP.

Every analysis speaks this vocabulary only (value vectors, key vectors, activation hook, final
norm, W_U, LoRA targets). Nothing else in the project branches on model names or families.

Conventions (see docs/METHOD.md): neuron ``(l, i)`` is unit ``i`` of layer ``l``'s MLP; its
activation is the MLP hidden value after the nonlinearity (for gated MLPs ``act(gate) * up``),
which is exactly the input of the down projection; its value vector ``v_i`` is the ``i``-th
column of the down projection viewed as a map ``d_mlp -> d_model``, so ``mlp_out = sum_i m_i v_i``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
                                          # interp.tokenization reads the tokenizer itself)
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
    "bert": FamilySpec(
        family="bert", model_types=("bert",), example="intfloat/multilingual-e5-small",
        layers="bert.encoder.layer", w_in="intermediate.dense", w_gate=None, w_out="output.dense",
        out_is_conv1d=False, final_norm="bert.encoder.layer.{last}.output.LayerNorm",
        unembed="bert.embeddings.word_embeddings", logit_scale_attr=None,
        lora_targets=("query", "key", "value", "dense"), prepends_bos=True,
        hook="blocks.{layer}.mlp.out.hook_in", generative=False, auto_class="AutoModelForMaskedLM",
        bridge_architecture="BertForMaskedLM", post_ln="output.LayerNorm", appends_eos=True,
    ),
    "xlm-roberta": FamilySpec(
        family="xlm-roberta", model_types=("xlm-roberta", "roberta"), example="FacebookAI/xlm-roberta-base",
        layers="roberta.encoder.layer", w_in="intermediate.dense", w_gate=None, w_out="output.dense",
        out_is_conv1d=False, final_norm="roberta.encoder.layer.{last}.output.LayerNorm",
        unembed="roberta.embeddings.word_embeddings", logit_scale_attr=None,
        lora_targets=("query", "key", "value", "dense"), prepends_bos=True,
        hook="blocks.{layer}.mlp.out.hook_in", generative=False, auto_class="AutoModelForMaskedLM",
        bridge_architecture="RobertaForMaskedLM", post_ln="output.LayerNorm", appends_eos=True,
    ),
}


class UnsupportedArchitectureError(ValueError):
    """The model's family has no adapter."""


def supported_model_types() -> list[str]:
    """Return the HF ``model_type`` values the adapter understands."""
    return [t for spec in FAMILIES.values() for t in spec.model_types]


def spec_for_model_type(model_type: str, *, where: str = "") -> FamilySpec:
    """Return the family spec serving HF ``model_type``, or a clear error listing the supported ones."""
    for spec in FAMILIES.values():
        if model_type in spec.model_types:
            return spec
    listing = ", ".join(f"{s.family} (model_type {'/'.join(s.model_types)}, e.g. {s.example})"
                        for s in FAMILIES.values())
    raise UnsupportedArchitectureError(
        f"{where + ': ' if where else ''}unsupported architecture model_type={model_type!r}; "
        f"supported families: {listing}"
    )


def hf_model_of(model: Any) -> nn.Module:
    """Return the HF CausalLM module behind a TransformerBridge, a PeftModel or an HF model."""
    if hasattr(model, "original_model") and isinstance(getattr(model, "original_model"), nn.Module):
        model = model.original_model
    if hasattr(model, "get_base_model") and hasattr(model, "peft_config"):
        model = model.get_base_model()
    if not isinstance(model, nn.Module) or not hasattr(model, "config"):
        raise TypeError(f"expected a TransformerBridge, PeftModel or HF model, got {type(model).__name__}")
    return model


def _unwrap(mod: nn.Module) -> nn.Module:
    """Strip TransformerBridge wrappers, returning the module that owns the parameters."""
    while "_original_component" in mod._modules:
        mod = mod._modules["_original_component"]
    return mod


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
    mod = _unwrap(mod)
    if hasattr(mod, "base_layer") and hasattr(mod, "get_delta_weight"):
        w = _dense_weight(_unwrap(mod.base_layer))
        if not getattr(mod, "merged", False) and not getattr(mod, "disable_adapters", False):
            for name in mod.active_adapters:
                if name in getattr(mod, "lora_A", {}):
                    w = w + mod.get_delta_weight(name).to(w.dtype)
        return w
    return _dense_weight(mod)


class ModelAdapter:
    """Reads an MLP-neuron view (value/key vectors, hooks, norm, W_U) off a loaded model."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.hf_model = hf_model_of(model)
        cfg = self.hf_model.config
        self.spec = spec_for_model_type(getattr(cfg, "model_type", "?"))
        self.family = self.spec.family
        self.n_layers: int = len(_get(self.hf_model, self.spec.layers))
        w_out = self.out_proj(0)
        self.d_model, self.d_mlp = self._out_shape(w_out)

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
    def _out_shape(self, mod: nn.Module) -> tuple[int, int]:
        w = effective_weight(mod)
        return (int(w.shape[1]), int(w.shape[0])) if self.spec.out_is_conv1d else (int(w.shape[0]), int(w.shape[1]))

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
        """
        layers = list(range(self.n_layers)) if layers is None else layers
        V = self.value_vectors(layers)
        if not self.spec.post_ln:
            return V
        gains = torch.stack([effective_weight(self.post_ln(l)).float() for l in layers])   # [n, d_model]
        return (V - V.mean(-1, keepdim=True)) * gains[:, None, :].to(V.device)

    @property
    def logit_scale(self) -> float:
        """Return the factor the family multiplies into its logits (Cohere/Aya: 1/16)."""
        attr = self.spec.logit_scale_attr
        return float(getattr(self.hf_model.config, attr, 1.0)) if attr else 1.0

    @torch.no_grad()
    def unembed_matrix(self) -> Float[Tensor, "d_model d_vocab"]:
        """Return W_U with any logit scale folded in: logits = final_norm(resid) @ W_U (+ b_U)."""
        head = _unwrap(_get(self.hf_model, self.spec.unembed))
        return effective_weight(head).float().T * self.logit_scale

    @torch.no_grad()
    def unembed_bias(self) -> Float[Tensor, "d_vocab"] | None:
        """Return the unembedding bias with the logit scale folded in, or None."""
        head = _unwrap(_get(self.hf_model, self.spec.unembed))
        b = getattr(head, "bias", None)
        return None if b is None else b.float() * self.logit_scale

    def lora_target_modules(self) -> list[str]:
        """Return the names of every linear layer of a block, for LoRA's ``target_modules``."""
        return list(self.spec.lora_targets)

    def __repr__(self) -> str:
        return (f"ModelAdapter(family={self.family!r}, n_layers={self.n_layers}, "
                f"d_model={self.d_model}, d_mlp={self.d_mlp})")


def get_adapter(model: Any) -> ModelAdapter:
    """Return the architecture adapter of ``model`` (bridge, PeftModel or HF model)."""
    return ModelAdapter(model)
