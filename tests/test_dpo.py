"""DPO training on tiny models: margin rises, QLoRA on CPU + adapter reload, merge, resume, bad inputs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from detox_train.config import PRESETS, DPOTrainConfig
from detox_train.dpo import CheckpointMismatchError, NoTrainableParametersError, last_checkpoint, lm_loss, lora_config, train_dpo
from interp.core.configio import ConfigError
from interp.data.records import PreferencePair
from tiny_models import make_model

PROMPTS = ["I want to", "this is a", "Je veux", "the quick brown", "what the", "Ich will"]
GOOD = [" go home now", " nice day", " aller à la maison", " fox jumps", " is wrong", " nach Hause"]
BAD = [" kill you idiot", " stupid idiot", " you are a stupid", " hell idiot", " hell stupid", " idiot you"]




def toy_pairs(n: int = 32) -> list[PreferencePair]:
    return [PreferencePair(id=f"toy:{i}", prompt=PROMPTS[i % 6], chosen=GOOD[(i // 6) % 6], rejected=BAD[i % 6],
                           source="toy") for i in range(n)]


def tiny_config(model_dir: Path, out: Path, **kw) -> DPOTrainConfig:
    base = dict(model=str(model_dir), pairs="given", optim="adamw_torch", learning_rate=5e-3, per_device_train_batch_size=4,
                warmup_steps=0, max_steps=4, eval_steps=2, early_stopping_patience=None, eval_fraction=0.125,
                max_length=32, max_prompt_length=8, heldout_texts=4, logging_steps=1, output_dir=str(out),
                lora_r=4, lora_alpha=8, lora_dropout=0.0)
    return DPOTrainConfig(**{**base, **kw})


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    name = "adapter_model.safetensors" if (path / "adapter_model.safetensors").is_file() else "model.safetensors"
    return load_file(str(path / name))


# ----------------------------------------------------------------------------- config
def test_presets_follow_the_paper(tmp_path: Path) -> None:
    full = DPOTrainConfig.preset("paper-full")
    assert (full.optim, full.learning_rate, full.per_device_train_batch_size, full.max_grad_norm, full.beta, full.warmup_steps,
            full.num_train_epochs, full.eval_fraction, full.eval_steps, full.early_stopping_patience, full.max_length,
            full.max_prompt_length) == ("rmsprop", 1e-5, 4, 10.0, 0.1, 150, 5.0, 0.05, 25, 10, 256, 64)
    q = DPOTrainConfig.preset("paper-qlora")
    assert (q.method, q.lora_r, q.lora_alpha, q.lora_dropout, q.lora_target_modules) == ("qlora", 64, 16, 0.05, None)
    assert set(PRESETS) >= {"paper-full", "paper-qlora", "lora", "cpu-demo"}
    assert DPOTrainConfig.preset("lora", lora_r=8).lora_r == 8
    with pytest.raises(ConfigError, match="unknown DPO preset"):
        DPOTrainConfig.preset("nope")
    with pytest.raises(ConfigError, match="unknown config key.*lr"):
        DPOTrainConfig.preset("lora", lr=1)
    path = q.to_yaml(tmp_path / "q.yaml")
    assert DPOTrainConfig.from_yaml(path) == q
    (tmp_path / "p.yaml").write_text("preset: cpu-demo\nbeta: 0.2\n")
    assert DPOTrainConfig.from_yaml(tmp_path / "p.yaml") == DPOTrainConfig.preset("cpu-demo", beta=0.2)
    with pytest.raises(ConfigError, match="max_prompt_length must be smaller"):
        DPOTrainConfig(max_length=10, max_prompt_length=10)


def test_dpo_args_precision_and_schedule(tmp_path: Path) -> None:
    from detox_train.dpo import dpo_args

    cfg = DPOTrainConfig.preset("paper-full", output_dir=str(tmp_path), sft_weight=0.5)
    args = dpo_args(cfg, "cpu", has_eval=True)
    assert args.bf16 is False and args.fp16 is False            # never half precision on CPU
    assert getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type) == "constant_with_warmup" and args.warmup_steps == 150
    assert getattr(args.optim, "value", args.optim) == "rmsprop" and args.max_grad_norm == 10.0 and args.beta == 0.1
    assert args.loss_type == ["sigmoid", "sft"] and args.loss_weights == [1.0, 0.5]
    assert args.eval_steps == 25 and args.metric_for_best_model == "eval_loss" and args.load_best_model_at_end
    assert dpo_args(cfg.replace(sft_weight=0.0), "cpu", has_eval=False).loss_type == ["sigmoid"]


def test_lora_targets_come_from_the_architecture_adapter(family: str) -> None:
    from peft import get_peft_model

    from interp.model.architecture import get_adapter

    model = make_model(family, 320)
    cfg = lora_config(DPOTrainConfig(method="lora", lora_r=2), model)
    assert set(cfg.target_modules) == set(get_adapter(model).lora_target_modules())
    peft = get_peft_model(model, cfg)
    wrapped = {n.rsplit(".", 1)[-1] for n, m in peft.named_modules() if hasattr(m, "lora_A")}
    assert wrapped == set(get_adapter(model).lora_target_modules())


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory) -> Path:
    from tiny_models import save_tiny

    return save_tiny("gpt2", tmp_path_factory.mktemp("dpo_tiny") / "gpt2")


def test_full_dpo_raises_the_margin_and_logs_heldout_loss(gpt2_dir: Path, tmp_path: Path) -> None:
    out = train_dpo(tiny_config(gpt2_dir, tmp_path / "run"), pairs=toy_pairs())
    log = json.loads((out / "training_log.json").read_text())
    evals = [e for e in log["evals"] if "eval_rewards/margins" in e]
    assert [e["step"] for e in evals] == [2, 4]
    # Policy == reference at step 0, so the margin starts at 0; it must grow with training.
    assert 0 < evals[0]["eval_rewards/margins"] < evals[-1]["eval_rewards/margins"]
    assert evals[-1]["eval_rewards/accuracies"] == 1.0
    held = [e for e in log["evals"] if "heldout_lm_loss" in e]
    assert [e["step"] for e in held] == [0, 2, 4] and held[0]["heldout_lm_loss_delta"] == 0.0

    man = json.loads((out / "manifest.json").read_text())
    assert man["kind"] == "dpo" and man["seed"] == 0 and man["config"]["beta"] == 0.1
    assert len(man["inputs"]["data_hash"]) == 16 and man["n_pairs"] == {
        "train": 28, "eval": 4, "in": 32, "dropped_prompt_too_long": 0, "prompt_truncated_left": 0,
        "response_truncated": 0, "long_prompts": "drop", "dropped_too_long": 0}
    assert "trl" in man["versions"] and "git_sha" in man
    assert not (out / "training_args.bin").exists()

    # Independent check of the step-0 held-out loss: HF's own mean token loss, text by text.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gpt2_dir))
    base = AutoModelForCausalLM.from_pretrained(str(gpt2_dir)).eval()
    texts = [r["prompt"] + r["chosen"] for r in map(json.loads, (out / "pairs.jsonl").read_text().splitlines())][-4:]
    nll, n = 0.0, 0
    for t in texts:
        ids = torch.tensor([[tok.bos_token_id] + tok(t, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            nll += float(base(input_ids=ids, labels=ids).loss) * (ids.shape[1] - 1)
        n += ids.shape[1] - 1
    assert held[0]["heldout_lm_loss"] == pytest.approx(nll / n, rel=1e-5)
    assert lm_loss(base, tok, texts) == pytest.approx(nll / n, rel=1e-5)


class _NoTraining(TrainerCallback):
    def on_train_begin(self, args, state, control, **kw):  # noqa: ANN001 - TrainerCallback signature
        raise AssertionError("a finished run was trained again")


class _Crash(TrainerCallback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, args, state, control, **kw):  # noqa: ANN001 - TrainerCallback signature
        if state.global_step == self.at:
            raise KeyboardInterrupt(f"simulated kill at step {self.at}")


def test_kill_and_resume_matches_an_uninterrupted_run(gpt2_dir: Path, tmp_path: Path) -> None:
    heldout = tmp_path / "neutral.txt"
    heldout.write_text("this is a nice day\nI want to go home now\n")
    kw = dict(max_steps=4, eval_fraction=0.0, save_steps=2, heldout_source=str(heldout), save_total_limit=None)
    ref = train_dpo(tiny_config(gpt2_dir, tmp_path / "ref", **kw), pairs=toy_pairs())

    cfg = tiny_config(gpt2_dir, tmp_path / "killed", **kw)
    with pytest.raises(KeyboardInterrupt):
        train_dpo(cfg, pairs=toy_pairs(), callbacks=[_Crash(3)])
    assert last_checkpoint(cfg.output_dir).name == "checkpoint-2"
    with pytest.raises(ValueError, match="already holds checkpoints.*resume"):
        train_dpo(cfg, pairs=toy_pairs())
    out = train_dpo(cfg, pairs=toy_pairs(), resume=True)
    man = json.loads((out / "manifest.json").read_text())
    assert man["resumed_from"] == "checkpoint-2" and man["global_step"] == 4
    a, b = _weights(ref), _weights(out)
    assert a.keys() == b.keys()
    for k in a:  # same config + seed: identical weights, interrupted or not
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    hist = json.loads((out / "training_log.json").read_text())["evals"]
    assert [e["step"] for e in hist] == [0, 4]   # step-0 baseline came back with the checkpoint

    # A finished run resumed again is returned as it is: no trainer starts, no file changes.
    stamp = {f.name: f.stat().st_mtime_ns for f in out.iterdir() if f.is_file()}
    out2 = train_dpo(cfg, pairs=toy_pairs(), resume=True, callbacks=[_NoTraining()])
    assert out2 == out and {f.name: f.stat().st_mtime_ns for f in out.iterdir() if f.is_file()} == stamp
    with pytest.raises(CheckpointMismatchError, match="learning_rate"):  # another config is still refused
        train_dpo(cfg.replace(learning_rate=cfg.learning_rate * 2), pairs=toy_pairs(), resume=True)
    # Run A's folder, its checkpoints deleted, starts run B (other pairs), which is killed: resuming B must
    # resume B, never return A's weights under B's key (run_key.json is written when training starts).
    import shutil

    for c in out.glob("checkpoint-*"):
        shutil.rmtree(c)
    with pytest.raises(KeyboardInterrupt):
        train_dpo(cfg, pairs=toy_pairs(24), resume=True, callbacks=[_Crash(3)])
    assert not (out / "manifest.json").exists()
    out3 = train_dpo(cfg, pairs=toy_pairs(24), resume=True)
    man3 = json.loads((out3 / "manifest.json").read_text())
    assert man3["resumed_from"] == "checkpoint-2" and man3["run_key_hash"] != man["run_key_hash"]


def test_qlora_on_cpu_adapter_reload_and_merge(gpt2_dir: Path, tmp_path: Path) -> None:
    from peft import PeftModel

    from detox_train.merge import merge_adapter
    from interp.model.architecture import hf_model_of
    from interp.model.loading import adapter_disabled, load_hf_model, load_model

    cfg = tiny_config(gpt2_dir, tmp_path / "q", method="qlora", max_steps=2, eval_fraction=0.0,
                      heldout_source="gettext", heldout_texts=2, learning_rate=2e-2, per_device_train_batch_size=2)
    out = train_dpo(cfg, pairs=toy_pairs(8))
    acfg = json.loads((out / "adapter_config.json").read_text())
    assert set(acfg["target_modules"]) == {"c_attn", "c_proj", "c_fc"}
    assert (acfg["r"], acfg["lora_alpha"]) == (4, 8)
    assert json.loads((out / "manifest.json").read_text())["method"] == "qlora"

    ids = torch.tensor([[0, 5, 9, 17, 33, 60]])
    bridge = load_model(str(gpt2_dir), adapter=out, device="cpu")  # the adapter loads back onto one base
    hf = hf_model_of(bridge)
    with torch.no_grad():
        tuned = hf(input_ids=ids).logits
        with adapter_disabled(bridge):
            plain = hf(input_ids=ids).logits
    assert (tuned - plain).abs().max() > 1e-3  # training moved the adapter off its zero init

    merged_dir = merge_adapter(out, tmp_path / "merged")
    merged, _ = load_hf_model(merged_dir, device="cpu")
    assert not any("lora" in n for n, _ in merged.named_parameters())
    base, _ = load_hf_model(gpt2_dir, device="cpu", dtype="float32")
    unmerged = PeftModel.from_pretrained(base, str(out)).eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, unmerged(input_ids=ids).logits,
                                   rtol=1e-4, atol=1e-4)
    mman = json.loads((merged_dir / "manifest.json").read_text())
    assert mman["kind"] == "dpo-merge" and mman["trained_on_4bit_base"] is True
    assert mman["merged_path"] == str(merged_dir.resolve())
    assert json.loads((out / "manifest.json").read_text())["merged_to"] == [str(merged_dir.resolve())]
    with pytest.raises(FileExistsError, match="not empty"):
        merge_adapter(out, merged_dir)


# ----------------------------------------------------------------------------- bad inputs
def test_bad_inputs_get_clear_errors(gpt2_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_config(gpt2_dir, tmp_path / "bad")
    with pytest.raises(ValueError, match="no preference pairs"):
        train_dpo(cfg, pairs=[])
    same = toy_pairs(4) + [PreferencePair(id="dup", prompt="a", chosen="x", rejected="x", source="t")]
    with pytest.raises(ValueError, match="pair dup.*chosen == rejected"):
        train_dpo(cfg, pairs=same)
    long = toy_pairs(8) + [PreferencePair(id="long", prompt="I want to go home now, " * 4, chosen=" ok",
                                          rejected=" idiot", source="t")]
    with pytest.raises(ValueError, match=r"pair long.*more than max_prompt_length=8"):
        train_dpo(cfg.replace(drop_long=False), pairs=long)
    with pytest.raises(NoTrainableParametersError, match="no module"):
        train_dpo(cfg.replace(method="lora", lora_target_modules=["not_a_layer"]), pairs=toy_pairs())
    with pytest.raises(NoTrainableParametersError, match="empty"):
        train_dpo(cfg.replace(method="lora", lora_target_modules=[]), pairs=toy_pairs())
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty pairs file"):
        train_dpo(cfg.replace(pairs=str(empty)))


def test_frozen_model_has_no_trainable_parameters(gpt2_dir: Path, tmp_path: Path, monkeypatch) -> None:
    import detox_train.dpo as dpo

    real = dpo._load_model

    def frozen(config, device):  # noqa: ANN001, ANN202
        model, tok = real(config, device)
        return model.requires_grad_(False), tok

    monkeypatch.setattr(dpo, "_load_model", frozen)
    with pytest.raises(NoTrainableParametersError, match="no trainable parameters"):
        train_dpo(tiny_config(gpt2_dir, tmp_path / "frozen"), pairs=toy_pairs())


def test_cli_trains_from_a_pairs_file(gpt2_dir: Path, tmp_path: Path) -> None:
    from detox_train.pairs import write_pairs_jsonl
    from interp.app.cli import main

    pairs = write_pairs_jsonl(tmp_path / "pairs.jsonl", toy_pairs(8))
    rc = main(["dpo", "train", "--preset", "paper-full", "--model", str(gpt2_dir), "--pairs", str(pairs),
               "--output-dir", str(tmp_path / "cli"), "--max-steps", "1", "--set", "max_length=32",
               "--set", "max_prompt_length=8", "--set", "eval_fraction=0.0", "--set", "heldout_source=gettext",
               "--set", "heldout_texts=2", "--set", "warmup_steps=0"])
    assert rc == 0 and (tmp_path / "cli" / "model.safetensors").is_file()
    assert main(["dpo", "train", "--pairs", str(tmp_path / "missing.jsonl"), "--model", str(gpt2_dir),
                 "--output-dir", str(tmp_path / "x")]) == 2


def test_bridge_applies_a_lora_on_the_joint_qkv_projection(gpt2_dir: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    from interp.model.architecture import hf_model_of
    from interp.model.loading import load_hf_model, load_model

    model, _ = load_hf_model(gpt2_dir, device="cpu")
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=["c_attn"], init_lora_weights=False)).eval()
    peft.save_pretrained(str(tmp_path / "a"))
    ids = torch.tensor([[0, 5, 9, 17]])
    bridge = load_model(str(gpt2_dir), adapter=tmp_path / "a", device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(hf_model_of(bridge)(input_ids=ids).logits, peft(input_ids=ids).logits,
                                   rtol=1e-4, atol=1e-4)


def test_onpolicy_source_samples_english_train_prompts(gpt2_dir: Path, tmp_path: Path, data_root: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from detox_train.dpo import build_pairs
    from interp.data.split import is_eval_index

    tok = AutoTokenizer.from_pretrained(str(gpt2_dir))
    model = AutoModelForCausalLM.from_pretrained(str(gpt2_dir))
    cfg = tiny_config(gpt2_dir, tmp_path, pairs="onpolicy", onpolicy_prompts=2, onpolicy_k=2,
                      data_root=str(data_root))
    pairs, info = build_pairs(cfg, model=model, tokenizer=tok, score_fn=lambda ts: [float(len(t)) for t in ts])
    assert info["n_prompts"] == 2 and info["k"] == 2
    for p in pairs:
        lang, index = p.meta["prompt_id"].split(":")[1:3]
        assert lang == "en" and not is_eval_index(int(index))  # never an evaluation prompt
        assert p.meta["score_gap"] > 0


def test_bridge_base_view_of_a_joint_qkv_lora_matches_plain_base(gpt2_dir: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    from interp.model.architecture import hf_model_of
    from interp.model.loading import adapter_disabled, load_hf_model, load_model

    model, _ = load_hf_model(gpt2_dir, device="cpu")
    ids = torch.tensor([[0, 5, 9, 17]])
    with torch.no_grad():
        base_logits = model(input_ids=ids).logits.clone()
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=["c_attn", "c_fc"], init_lora_weights=False)).eval()
    peft.save_pretrained(str(tmp_path / "a"))
    with torch.no_grad():
        tuned_logits = peft(input_ids=ids).logits
    bridge = load_model(str(gpt2_dir), adapter=tmp_path / "a", device="cpu")
    with torch.no_grad():
        with adapter_disabled(bridge):
            torch.testing.assert_close(bridge(ids), base_logits, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(bridge(ids), tuned_logits, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(hf_model_of(bridge)(input_ids=ids).logits, tuned_logits, rtol=1e-4, atol=1e-4)
