"""DPO training on TRL's ``DPOTrainer``: full fine-tuning, LoRA or QLoRA, with resume and a run manifest.

TRL provides the loss (sigmoid DPO, summed response log-probs, optional SFT term) and the loop;
this module only prepares data, the model and the adapter, and records what happened:

* ``manifest.json``: config, seed, data hash and counts, versions, git sha;
* ``training_log.json``: DPO reward margins/accuracies at every eval plus the held-out LM loss on
  neutral text (and its change from the start), so degeneration is visible;
* the model (or adapter) via ``save_pretrained`` plus the tokenizer.

The same entry point runs under ``accelerate launch`` (the Trainer reads the distributed setup
from the environment); only the main process writes the manifest and logs.
"""
from __future__ import annotations

import copy
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from detox_train.config import DPOTrainConfig
from detox_train.training_args import training_kwargs
from detox_train.pairs import (FilterReport, dpo_prompt_text, filter_pairs_by_tokens, onpolicy_pairs, paradetox_pairs,
                               pplm_pairs, read_pairs_jsonl, split_pairs, subsample, truncate_prompts_left,
                               validate_pairs, write_pairs_jsonl)
from interp.core.artifacts import read_json, stable_hash, to_jsonable, write_json, write_manifest
from interp.data.records import PreferencePair
from interp.model.lm_loss import lm_loss  # the one LM-loss implementation (re-exported here)

log = logging.getLogger(__name__)

TRAINING_LOG = "training_log.json"
PAIRS_FILE = "pairs.jsonl"
RUN_KEY = "run_key.json"  # what the checkpoints in an output directory were trained from
# Config fields that cannot change the weights (where the run lives, how it logs and uses threads).
_NOT_IN_RUN_KEY = ("output_dir", "report_to", "num_threads", "logging_steps")
_CKPT = re.compile(r"^checkpoint-(\d+)$")


class NoTrainableParametersError(ValueError):
    """The model has nothing to train (e.g. LoRA targets matched no module)."""


class CheckpointMismatchError(ValueError):
    """A checkpoint to resume was written by another config, base model or data."""


# ----------------------------------------------------------------------------- devices & precision
def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(config: DPOTrainConfig) -> str:
    """Return the device of this process: config.device, else this rank's GPU, else cpu."""
    if config.device:
        if config.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {config.device!r} requested but no GPU is visible; use device: cpu")
        return config.device
    if torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true"):
        return f"cuda:{_local_rank()}"
    return "cpu"




# ----------------------------------------------------------------------------- data
def _data_root(config: DPOTrainConfig) -> Path:
    from interp.core.paths import data_root

    return data_root(config.data_root)


def resolve_scorer(name: str, *, data_root: str | None = None) -> Callable[[list[str]], list[float]]:
    """Return the evaluation module's scorer ``name`` as ``english texts -> toxicity scores``."""
    try:
        from detox_train.evaluate.scorers import get_scorer
    except ImportError as e:
        raise ValueError(f"pairs='onpolicy' needs a scorer, but detox_train.evaluate.scorers is not available "
                         f"({e}); pass score_fn= to train_dpo or use another pairs source") from e
    if name == "lexicon":
        from interp.data.lexicon import Lexicon

        scorer = get_scorer(name, lexicon=Lexicon.from_root(data_root))
    else:
        scorer = get_scorer(name)

    def score_en(texts: list[str]) -> list[float]:
        results = scorer.score(list(texts), ["en"] * len(texts))
        bad = next((r for r in results if r.failed), None)
        if bad is not None:  # a failed score must never pass for "not toxic"
            raise ValueError(f"scorer {name!r} failed on an on-policy sample: {bad.error}")
        return [float(r.score) for r in results]

    score_en.__name__ = f"{scorer.id}@{scorer.version}"
    return score_en


def build_pairs(config: DPOTrainConfig, *, model: Any = None, tokenizer: Any = None,
                score_fn: Callable[[list[str]], list[float]] | None = None) -> tuple[list[PreferencePair], dict[str, Any]]:
    """Return (pairs, info) for ``config.pairs``; info has the source and, for PPLM, the stripped-prefix count."""
    src = config.pairs
    info: dict[str, Any] = {"source": src}
    if src == "paradetox":
        pairs = paradetox_pairs(_data_root(config), prompt=config.paradetox_prompt)
    elif src == "pplm":
        pairs, n_stripped = pplm_pairs(str(config.pplm_path))
        info.update(path=str(config.pplm_path), n_prefix_stripped=n_stripped)
    elif src == "onpolicy":
        if model is None or tokenizer is None:
            raise ValueError("pairs='onpolicy' samples from the model being trained; pass model and tokenizer")
        from interp.data.rtplx import load_rtplx
        from interp.data.split import rtplx_split

        prompts = rtplx_split(load_rtplx(_data_root(config), ["en"]), "train", root=_data_root(config))
        prompts = subsample(prompts, config.onpolicy_prompts, config.seed)
        fn = score_fn or resolve_scorer(config.onpolicy_scorer, data_root=config.data_root)
        pairs = onpolicy_pairs(model, tokenizer, prompts, fn, k=config.onpolicy_k, seed=config.seed)
        info.update(n_prompts=len(prompts), k=config.onpolicy_k,
                    scorer=getattr(fn, "__name__", "custom"))
    else:
        path = Path(src).expanduser()
        if not path.exists():
            raise ValueError(f"pairs={src!r} is neither 'paradetox', 'pplm', 'onpolicy' nor an existing JSONL file")
        pairs = read_pairs_jsonl(path)
        info.update(path=str(path))
    return pairs, info


def prepare_pairs(pairs: Sequence[PreferencePair], tokenizer: Any, config: DPOTrainConfig
                  ) -> tuple[list[PreferencePair], list[PreferencePair], FilterReport]:
    """Return (train, eval, filter report): validated, subsampled, token-filtered and split pairs."""
    pairs = validate_pairs(list(pairs), where=f"pairs ({config.pairs})")
    pairs = subsample(pairs, config.max_pairs, config.seed)
    n_cut = n_resp = 0
    if config.long_prompts == "truncate_left":
        pairs, n_cut, n_resp = truncate_prompts_left(pairs, tokenizer, config.max_prompt_length, config.max_length)
    kept, report = filter_pairs_by_tokens(pairs, tokenizer, config.max_length, config.max_prompt_length,
                                          drop=config.drop_long, check_prompt=config.long_prompts != "truncate_left")
    report.n_prompt_truncated, report.n_response_truncated = n_cut, n_resp
    if not kept:
        raise ValueError(f"all {report.n_in} pairs exceed the token limits (max_prompt_length="
                         f"{config.max_prompt_length}, max_length={config.max_length}); raise them")
    train, evals = split_pairs(kept, config.eval_fraction, config.seed)
    return train, evals, report


def _start_token(tokenizer: Any) -> str:
    tok = tokenizer.bos_token or tokenizer.eos_token
    if tok is None:
        raise ValueError("the tokenizer has neither a BOS nor an EOS token; give the pairs a non-empty prompt")
    return tok


def to_dataset(pairs: Sequence[PreferencePair], tokenizer: Any) -> Any:
    """Return a ``datasets.Dataset`` with prompt/chosen/rejected columns for TRL.

    An empty prompt becomes the start token once (:func:`dpo_prompt_text`), so the first completion
    token is predicted from a start token and scored like the rest (TRL never scores position 0).
    """
    from datasets import Dataset

    if any(not p.prompt for p in pairs):
        _start_token(tokenizer)  # a clear error when an empty prompt has no start token
    return Dataset.from_dict({
        "prompt": [dpo_prompt_text(p.prompt, tokenizer) for p in pairs],
        "chosen": [p.chosen for p in pairs],
        "rejected": [p.rejected for p in pairs],
    })


def heldout_neutral_texts(config: DPOTrainConfig, eval_pairs: Sequence[PreferencePair]) -> list[str]:
    """Return the neutral texts for the held-out LM loss (never trained on), at most config.heldout_texts."""
    src = config.heldout_source
    if src == "eval_chosen":
        texts = [p.prompt + p.chosen for p in eval_pairs]
        if not texts:
            raise ValueError("heldout_source='eval_chosen' needs eval pairs; set eval_fraction > 0 or "
                             "heldout_source: gettext")
    elif src == "gettext":
        from interp.data.sources import gettext_parallel

        # English msgids that have a German translation: real UI sentences, never toxic, never trained on.
        texts = gettext_parallel(["en", "de"]).get("en", [])
        if not texts:
            raise ValueError("heldout_source='gettext': no English gettext strings found under /usr/share/locale; "
                             "use heldout_source: eval_chosen or a text file")
        texts = subsample(texts, config.heldout_texts, config.seed + 1)
    else:
        path = Path(src).expanduser()
        if not path.is_file():
            raise ValueError(f"heldout_source={src!r}: not 'eval_chosen', 'gettext' or an existing text file")
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not texts:
            raise ValueError(f"{path}: held-out text file is empty (one text per line)")
    return list(texts[: config.heldout_texts])


# ----------------------------------------------------------------------------- callbacks
def _make_heldout_callback(texts: list[str], tokenizer: Any, max_length: int) -> Any:
    from transformers import TrainerCallback

    class HeldoutLMLossCallback(TrainerCallback):
        """Adds ``heldout_lm_loss`` (and its change since step 0) to the log history at every eval."""

        def _record(self, state: Any, model: Any) -> None:
            loss = lm_loss(model, tokenizer, texts, max_length=max_length)
            base = next((r["heldout_lm_loss"] for r in state.log_history
                         if "heldout_lm_loss" in r and r.get("step") == 0), loss)
            state.log_history.append({"step": state.global_step, "epoch": state.epoch or 0.0,
                                      "heldout_lm_loss": loss, "heldout_lm_loss_delta": loss - base})

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            # On resume, the step-0 baseline comes back with the checkpoint's log history.
            if texts and not any("heldout_lm_loss" in r for r in state.log_history):
                self._record(state, model)

        def on_evaluate(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            if texts:
                self._record(state, model)
            if state.is_world_process_zero:
                write_json(Path(args.output_dir) / TRAINING_LOG, training_log(state.log_history))

    return HeldoutLMLossCallback()


def training_log(history: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Return {"evals": [...], "train": [...]}: eval records merged by step, train logs as they are."""
    evals: dict[int, dict[str, Any]] = {}
    train: list[dict[str, Any]] = []
    for rec in history:
        step = int(rec.get("step", 0))
        if "heldout_lm_loss" in rec or any(k.startswith("eval_") for k in rec):
            evals.setdefault(step, {"step": step}).update(rec)
        elif "loss" in rec or "train_loss" in rec:
            train.append(dict(rec))
    return {"evals": [evals[s] for s in sorted(evals)], "train": train}


# ----------------------------------------------------------------------------- model
def _load_model(config: DPOTrainConfig, device: str) -> tuple[Any, Any]:
    from interp.model.loading import load_hf_model

    quant = "4bit" if config.method == "qlora" else None
    # Weights stay fp32 (bf16 runs use autocast); the QLoRA base is NF4 with bf16 compute.
    model, tok = load_hf_model(config.model, dtype="float32", device=device, quantization=quant)
    from interp.model.architecture import get_adapter, require_generation

    require_generation(get_adapter(model).spec, "DPO training")  # needs the policy's own sampled log-probs
    if quant is not None and device == "cpu":
        _disable_bnb_cpu_packing(model)
    from interp.model.tokenization import token_rule

    # TRL tokenizes the texts itself: set the tokenizer up so that it sees the run's prompt ids.
    return model, token_rule(tokenizer=tok, policy=config.bos).hf_tokenizer()


def _disable_bnb_cpu_packing(model: Any) -> None:
    """Turn off bitsandbytes' CPU inference repacking of 4-bit weights.

    On AVX512-bf16 CPUs, bitsandbytes 0.50 repacks a Linear4bit's weights in place on the first
    no-grad eval forward. That fails for layers narrower than the quantization block (64) and
    changes the weight layout in the middle of a training run (evals run between train steps).
    """
    for mod in model.modules():
        if hasattr(mod, "support_avx512bf16_for_cpu"):
            mod.support_avx512bf16_for_cpu = False


def lora_config(config: DPOTrainConfig, model: Any) -> Any:
    """Return the PEFT LoraConfig; targets come from the architecture adapter unless the config names them."""
    from peft import LoraConfig

    from interp.model.architecture import get_adapter

    targets = (list(config.lora_target_modules) if config.lora_target_modules is not None
               else get_adapter(model).lora_target_modules())
    if not targets:
        raise NoTrainableParametersError("lora_target_modules is empty: LoRA would train no parameters; "
                                         "leave it null (all linear layers) or name modules")
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in present]
    if len(missing) == len(targets):
        raise NoTrainableParametersError(
            f"lora_target_modules {targets} match no module of {type(model).__name__}, so nothing would be "
            f"trained; leave it null to use the architecture's linear layers")
    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM", bias="none")


def count_trainable(model: Any) -> int:
    """Return the number of parameters with ``requires_grad``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------- checkpoints
def last_checkpoint(output_dir: str | os.PathLike[str]) -> Path | None:
    """Return the checkpoint folder with the highest step in ``output_dir`` (complete ones only), or None."""
    d = Path(output_dir)
    if not d.is_dir():
        return None
    found = []
    for c in d.iterdir():
        m = _CKPT.match(c.name)
        # A checkpoint is complete once trainer_state.json is written (the Trainer writes it last).
        if m and c.is_dir() and (c / "trainer_state.json").is_file():
            found.append((int(m.group(1)), c))
    return max(found)[1] if found else None




def quiet_metric_printing(trainer: Any) -> None:
    """Stop the Trainer printing every metrics dict to stdout; they go to the training log instead."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class BarOnly(ProgressCallback):
        def on_log(self, *args: Any, **kwargs: Any) -> None:
            return None

    trainer.remove_callback(PrinterCallback)
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(BarOnly)


def dpo_args(config: DPOTrainConfig, device: str, *, has_eval: bool) -> Any:
    """Return TRL's ``DPOConfig`` for ``config`` (paper schedule: linear warmup, then constant)."""
    from trl import DPOConfig

    loss_type, loss_weights = (["sigmoid", "sft"], [1.0, config.sft_weight]) if config.sft_weight > 0 else (["sigmoid"], None)
    return DPOConfig(**training_kwargs(config, device, has_eval=has_eval), beta=config.beta, loss_type=loss_type,
                     loss_weights=loss_weights, max_length=config.max_length)




# ----------------------------------------------------------------------------- entry point
def run_key(config: DPOTrainConfig, base_fingerprint: str, data_hash: str) -> dict[str, Any]:
    """Return what determines a run's weights: the config (less where it lives/logs), base weights and pairs."""
    cfg = {k: v for k, v in config.to_dict().items() if k not in _NOT_IN_RUN_KEY}
    return {"config": cfg, "base_model_fingerprint": base_fingerprint, "data_hash": data_hash}


def _key_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Return a short description of how two run keys differ."""
    diffs = [f"{k} {old.get('config', {}).get(k)!r} -> {v!r}" for k, v in new["config"].items()
             if old.get("config", {}).get(k) != v]
    for k, what in (("base_model_fingerprint", "base model weights"), ("data_hash", "preference pairs")):
        if old.get(k) != new[k]:
            diffs.append(f"{what} {old.get(k)} -> {new[k]}")
    return "; ".join(diffs[:6]) or "unknown difference"


def _clear_run(out: Path) -> None:
    """Delete the checkpoints and final outputs this module wrote into ``out`` (for a restart)."""
    import shutil

    for c in out.iterdir() if out.is_dir() else []:
        if c.is_dir() and _CKPT.match(c.name):
            shutil.rmtree(c)
        elif c.is_file() and (c.suffix == ".safetensors" or c.name.endswith(".safetensors.index.json") or c.name in (
                "adapter_config.json", "config.json", "generation_config.json", "README.md", TRAINING_LOG,
                PAIRS_FILE, RUN_KEY, "manifest.json")):
            c.unlink()


def _finished(out: Path, key: dict[str, Any]) -> bool:
    """Whether ``out`` holds a finished run of run key ``key``: the manifest (written atomically, after the
    weights) records that key's hash. ``run_key.json`` is not proof: it is written when training starts."""
    if not (out / "manifest.json").is_file():
        return False
    man = read_json(out / "manifest.json")
    if not isinstance(man, dict) or man.get("kind") != "dpo" or man.get("run_key_hash") != stable_hash(key):
        return False
    return any(out.glob("*.safetensors"))


def train_dpo(config: DPOTrainConfig, *, pairs: Sequence[PreferencePair] | None = None, resume: bool = False,
              callbacks: Sequence[Any] = (), score_fn: Callable[[list[str]], list[float]] | None = None,
              on_mismatch: str = "refuse") -> Path:
    """Return the output directory after DPO training per ``config`` (model/adapter, manifest, training log).

    ``pairs`` overrides ``config.pairs`` (e.g. on-policy pairs built by the pipeline). With
    ``resume=True`` training continues from the last complete checkpoint in ``config.output_dir``, and a
    finished run of the same key is returned as it is (resuming it would retrain from its last checkpoint,
    and not every TRL trainer resumes bit for bit); without it an output directory that already holds
    checkpoints is refused. A checkpoint only
    resumes into the run that wrote it: same config (less output_dir/logging), same base-model
    weights and same pairs (``run_key.json``). Otherwise ``on_mismatch="refuse"`` raises
    :class:`CheckpointMismatchError` and ``"restart"`` deletes the old checkpoints and outputs and
    trains from scratch.
    """
    if on_mismatch not in ("refuse", "restart"):
        raise ValueError(f"on_mismatch must be 'refuse' or 'restart', got {on_mismatch!r}")
    from transformers import set_seed

    out = Path(config.output_dir)
    ckpt = last_checkpoint(out)
    if ckpt is not None and not resume:
        raise ValueError(f"{out} already holds checkpoints (last: {ckpt.name}); pass resume=True (--resume) to "
                         "continue that run, or choose a new output_dir")
    if resume and ckpt is None:
        log.warning("resume requested but %s has no checkpoint: starting from scratch", out)

    set_seed(config.seed)
    device = resolve_device(config)
    threads_before = torch.get_num_threads()
    if device == "cpu" and config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    try:
        return _train(config, device, pairs=pairs, resume=resume, ckpt=ckpt, callbacks=callbacks, score_fn=score_fn,
                      on_mismatch=on_mismatch)
    finally:
        torch.set_num_threads(threads_before)


def _train(config: DPOTrainConfig, device: str, *, pairs: Sequence[PreferencePair] | None, resume: bool,
           ckpt: Path | None, callbacks: Sequence[Any], score_fn: Callable[[list[str]], list[float]] | None,
           on_mismatch: str = "refuse") -> Path:
    from transformers import EarlyStoppingCallback

    from detox_train.preference import build_trainer, get_algorithm, preference_manifest, trainer_args

    from interp.model.loading import model_fingerprint

    out = Path(config.output_dir)
    model, tokenizer = _load_model(config, device)
    base_fingerprint = model_fingerprint(model)
    if pairs is None:
        pairs, info = build_pairs(config, model=model, tokenizer=tokenizer, score_fn=score_fn)
    else:
        info = {"source": "given"}
    train_pairs, eval_pairs, report = prepare_pairs(pairs, tokenizer, config)
    data_hash = stable_hash([[p.id, p.prompt, p.chosen, p.rejected] for p in train_pairs + eval_pairs])
    key = run_key(config, base_fingerprint, data_hash)
    if resume and _finished(out, key):  # a finished run of this very config, base and pairs: nothing to train
        log.info("%s: finished run of this config, base weights and pairs: reused, not retrained", out)
        return out
    heldout = heldout_neutral_texts(config, eval_pairs)

    peft_cfg = None
    if config.method in ("lora", "qlora"):
        peft_cfg = lora_config(config, model)
        if config.method == "qlora":
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    ref_model = None
    if peft_cfg is None and get_algorithm(config.algorithm).needs_reference:
        # An explicit frozen copy: TRL would otherwise reload the reference from the model's path.
        ref_model = copy.deepcopy(model).eval().requires_grad_(False)

    args = trainer_args(config, device, has_eval=bool(eval_pairs))
    cbs = [_make_heldout_callback(heldout, tokenizer, config.max_length), *callbacks]
    if args.metric_for_best_model is not None:
        cbs.append(EarlyStoppingCallback(early_stopping_patience=int(config.early_stopping_patience or 0)))
    trainer = build_trainer(config, model=model, ref_model=ref_model, args=args,
                            train_dataset=to_dataset(train_pairs, tokenizer),
                            eval_dataset=to_dataset(eval_pairs, tokenizer) if eval_pairs else None,
                            tokenizer=tokenizer, peft_config=peft_cfg, callbacks=cbs)
    quiet_metric_printing(trainer)
    n_train = count_trainable(trainer.model)
    if n_train == 0:
        raise NoTrainableParametersError(
            f"model {config.model!r} ({config.method}) has no trainable parameters; unfreeze weights or fix "
            "lora_target_modules")

    if resume and ckpt is not None:
        old = read_json(out / RUN_KEY) if (out / RUN_KEY).is_file() else {}
        if old != to_jsonable(key):
            why = _key_difference(old, key) if old else f"{out} has no {RUN_KEY} saying what wrote it"
            if on_mismatch == "refuse":
                raise CheckpointMismatchError(
                    f"{out}: cannot resume {ckpt.name}: it was written by another run ({why}); choose a new "
                    "output_dir, or delete that folder to train afresh")
            log.warning("%s: %s belongs to another run (%s): training from scratch", out, ckpt.name, why)
            trainer.accelerator.wait_for_everyone()
            if trainer.is_world_process_zero():
                _clear_run(out)
            trainer.accelerator.wait_for_everyone()  # no rank reads or writes `out` while rank 0 clears it
            ckpt = None
    main = trainer.is_world_process_zero()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "manifest.json").unlink(missing_ok=True)  # an older run's manifest must not mark this one finished
        write_json(out / RUN_KEY, key)
        write_pairs_jsonl(out / PAIRS_FILE, train_pairs + eval_pairs)

    trainer.train(resume_from_checkpoint=str(ckpt) if (resume and ckpt is not None) else None)
    # Make the last record describe the final weights (max_steps need not be a multiple of eval_steps).
    last = max((int(r.get("step", -1)) for r in trainer.state.log_history if "heldout_lm_loss" in r), default=-1)
    if last != trainer.state.global_step:
        if eval_pairs:
            trainer.evaluate()
        else:
            cbs[0]._record(trainer.state, trainer.model)

    trainer.save_model(str(out))
    if main:
        tokenizer.save_pretrained(str(out))
        # The Trainer pickles its arguments next to the model; the manifest holds the config instead.
        (out / "training_args.bin").unlink(missing_ok=True)
        from interp.core.artifacts import fix_permissions

        fix_permissions(out)  # the Trainer's writers leave some files (model.safetensors) at 0600
        tlog = training_log(trainer.state.log_history)
        write_json(out / TRAINING_LOG, tlog)
        evals = [e for e in tlog["evals"] if "heldout_lm_loss" in e]
        write_manifest(
            out, kind="dpo", config=config, seed=config.seed, model_id=config.model,
            inputs={"pairs": info, "data_hash": data_hash, "pairs_file": PAIRS_FILE},
            extra={
                "method": config.method,
                "run_key_hash": stable_hash(key),  # what `_finished` checks before returning a finished run
                "preference": preference_manifest(config, args),
                "n_pairs": {"train": len(train_pairs), "eval": len(eval_pairs), "in": report.n_in,
                            "dropped_prompt_too_long": report.n_prompt_too_long,
                            "prompt_truncated_left": report.n_prompt_truncated,
                            "response_truncated": report.n_response_truncated,
                            "long_prompts": config.long_prompts,
                            "dropped_too_long": report.n_too_long},
                "trainable_parameters": n_train,
                "global_step": trainer.state.global_step,
                # With early stopping the saved weights are the best checkpoint's, not the last step's.
                "best_checkpoint": Path(trainer.state.best_model_checkpoint).name
                if args.load_best_model_at_end and trainer.state.best_model_checkpoint else None,
                "resumed_from": ckpt.name if (resume and ckpt is not None) else None,
                "world_size": trainer.args.world_size,
                "heldout": {"source": config.heldout_source, "n_texts": len(heldout),
                            "lm_loss_start": evals[0]["heldout_lm_loss"] if evals else None,
                            "lm_loss_end": evals[-1]["heldout_lm_loss"] if evals else None},
                "adapter": peft_cfg is not None,
                "base_model": str(getattr(trainer.model.config, "_name_or_path", config.model)),
            })
    trainer.accelerator.wait_for_everyone()
    return out


def read_training_log(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the training log of a finished run."""
    return read_json(Path(run_dir) / TRAINING_LOG)


__all__ = ["train_dpo", "build_pairs", "prepare_pairs", "to_dataset", "heldout_neutral_texts", "lm_loss",
           "lora_config", "last_checkpoint", "dpo_args", "training_log", "read_training_log", "resolve_device",
           "NoTrainableParametersError", "CheckpointMismatchError", "count_trainable", "run_key"]
