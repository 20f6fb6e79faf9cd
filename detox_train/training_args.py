"""The ``TrainingArguments`` every preference trainer shares: schedule, precision, evaluation, saving.

One place for them, so DPO (``detox_train.dpo``) and the other TRL trainers (``detox_train.preference``)
train on the same schedule.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from detox_train.config import DPOTrainConfig


def use_bf16(config: DPOTrainConfig, device: str) -> bool:
    """Return whether to train in bf16 mixed precision (never on CPU unless asked; never fp16)."""
    if config.precision == "fp32":
        return False
    on_gpu = device.startswith("cuda")
    if config.precision == "bf16":
        if on_gpu and not torch.cuda.is_bf16_supported():
            raise ValueError("precision bf16 requested but this GPU does not support bf16; use precision: fp32")
        return True
    return on_gpu and torch.cuda.is_bf16_supported()


def transformers_progress_enabled() -> bool:
    """Return whether transformers' progress bars are on (the CLI's ``--no-progress`` turns them off)."""
    from transformers.utils import logging as hf_logging

    return hf_logging.is_progress_bar_enabled()


def training_kwargs(config: DPOTrainConfig, device: str, *, has_eval: bool) -> dict[str, Any]:
    """Return the ``TrainingArguments`` keywords every preference trainer shares (schedule, eval, saving)."""
    eval_on = has_eval and config.eval_steps > 0
    save_steps = config.save_steps or (config.eval_steps if eval_on else 50)
    early = eval_on and config.early_stopping_patience is not None
    return dict(
        output_dir=config.output_dir,
        seed=config.seed, data_seed=config.seed,
        optim=config.optim, learning_rate=config.learning_rate,
        lr_scheduler_type="constant_with_warmup", warmup_steps=config.warmup_steps,
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps, max_grad_norm=config.max_grad_norm,
        num_train_epochs=config.num_train_epochs, max_steps=config.max_steps,
        eval_strategy="steps" if eval_on else "no", eval_steps=config.eval_steps if eval_on else None,
        save_strategy="steps", save_steps=save_steps, save_total_limit=config.save_total_limit,
        # Early stopping keeps the best checkpoint by eval loss (the paper's criterion).
        load_best_model_at_end=early and save_steps % config.eval_steps == 0,
        metric_for_best_model="eval_loss" if early else None, greater_is_better=False if early else None,
        logging_steps=config.logging_steps, report_to=config.report_to,
        bf16=use_bf16(config, device), fp16=False, use_cpu=device == "cpu",
        gradient_checkpointing=config.gradient_checkpointing,
        disable_tqdm=not transformers_progress_enabled(), dataloader_num_workers=0, remove_unused_columns=False,
        save_only_model=False,
        # Every trainable weight takes part in each forward (full model or all LoRA layers).
        ddp_find_unused_parameters=False,
    )
