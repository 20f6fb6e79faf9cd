"""Consistent configs (issue 16): TRL's field names, flags generated from the dataclasses, presets as
named YAML files, and one meaning per "default"."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from detox_train.config import PRESETS, DPOTrainConfig, preset_names
from interp.core.configio import ConfigError, flag_name


def _dpo_parser() -> argparse.ArgumentParser:
    from interp.app.cli_dpo import add_train_args

    p = argparse.ArgumentParser(exit_on_error=False)
    add_train_args(p)
    return p


def _default(f: dataclasses.Field):  # type: ignore[type-arg]
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


# ----------------------------------------------------------------------------- TRL's names
def test_dpo_fields_that_trl_has_keep_trls_name_and_meaning(tmp_path: Path) -> None:
    from trl import DPOConfig

    from detox_train.training_args import training_kwargs

    ours = {f.name for f in dataclasses.fields(DPOTrainConfig)}
    trl = {f.name for f in dataclasses.fields(DPOConfig)}
    assert not ours & set(DPOTrainConfig.renamed_fields)  # no former name is still a field
    assert set(DPOTrainConfig.renamed_fields.values()) <= ours & trl
    cfg = DPOTrainConfig.preset("cpu-demo", output_dir=str(tmp_path), per_device_train_batch_size=3,
                                gradient_accumulation_steps=2, num_train_epochs=2.0, optim="adamw_torch",
                                save_steps=10)  # null would mean "eval_steps", resolved there
    kwargs = training_kwargs(cfg, "cpu", has_eval=True)
    shared = set(kwargs) & ours
    assert {"optim", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs"} <= shared
    assert {k: kwargs[k] for k in shared} == {k: getattr(cfg, k) for k in shared}  # same name, same value


@pytest.mark.parametrize("old,new", sorted(DPOTrainConfig.renamed_fields.items()))
def test_former_dpo_names_are_refused_naming_the_new_one(old: str, new: str, tmp_path: Path) -> None:
    value = "adamw_torch" if new == "optim" else 2
    for build in (lambda: DPOTrainConfig.preset("lora", **{old: value}),
                  lambda: DPOTrainConfig(**{"output_dir": "x"}).replace(**{old: value})):
        with pytest.raises(ConfigError, match=f"{old} was renamed {new}"):
            build()
    (tmp_path / "c.yaml").write_text(f"preset: cpu-demo\n{old}: {value}\n")
    with pytest.raises(ConfigError, match=f"c.yaml: .*{old} was renamed {new}"):
        DPOTrainConfig.from_yaml(tmp_path / "c.yaml")
    with pytest.raises(argparse.ArgumentError, match=f"{flag_name(old)}: was renamed {flag_name(new)}"):
        _dpo_parser().parse_args(["--preset", "cpu-demo", flag_name(old), str(value)])


def test_run_config_refuses_dpo_overrides_with_former_names() -> None:
    from interp.app.pipeline import validate_config
    from interp.app.run_config import load_run_config

    cfg = load_run_config(preset="smoke", overrides={"dpo.overrides": {"batch_size": 2}})
    with pytest.raises(ConfigError, match="dpo.overrides: .*batch_size was renamed per_device_train_batch_size"):
        validate_config(cfg)


# ----------------------------------------------------------------------------- flags from the dataclass
def test_every_dpo_field_has_help_and_a_flag_whose_default_is_the_dataclass_default() -> None:
    p = _dpo_parser()
    flags = {a.dest: a for a in p._actions}
    for f in dataclasses.fields(DPOTrainConfig):
        assert str(f.metadata.get("help", "")).strip(), f"{f.name} has no help text"
        action = flags[f.name]
        assert flag_name(f.name) in action.option_strings
        assert p.get_default(f.name) == _default(f), f.name
        assert f.metadata["help"].split(";")[0][:40] in action.help  # the help is the field's own


def test_given_flags_override_the_preset_and_leave_the_rest() -> None:
    from interp.app.cli_dpo import _config_from_args

    p = _dpo_parser()
    assert _config_from_args(p.parse_args(["--preset", "cpu-demo"])) == DPOTrainConfig.preset("cpu-demo")
    args = p.parse_args(["--preset", "cpu-demo", "--per-device-train-batch-size", "2", "--max-pairs", "null",
                         "--drop-long", "false", "--gradient-checkpointing", "--lora-target-modules", "[c_attn]",
                         "--output-dir", "2024", "--algorithm-args", "{label_smoothing: 0.1}"])
    got = _config_from_args(args)
    assert got == DPOTrainConfig.preset("cpu-demo", per_device_train_batch_size=2, max_pairs=None, drop_long=False,
                                        gradient_checkpointing=True, lora_target_modules=["c_attn"],
                                        output_dir="2024", algorithm_args={"label_smoothing": 0.1})
    assert got.max_steps == 60  # the preset's value, not the dataclass default the flag shows
    with pytest.raises(ConfigError, match="per_device_train_batch_size: expected an integer"):
        _config_from_args(p.parse_args(["--per-device-train-batch-size", "two"]))


def test_model_and_data_flags_come_from_the_run_config_fields() -> None:
    from interp.app.cli_common import add_data_root_arg, add_model_args
    from interp.app.run_config import ModelStageConfig, RunConfig

    p = argparse.ArgumentParser()
    add_model_args(p)
    add_data_root_arg(p)
    actions = {a.option_strings[0]: a for a in p._actions if a.option_strings}
    for flag, cls, name in (("--model", ModelStageConfig, "name"), ("--adapter", ModelStageConfig, "adapter"),
                            ("--dtype", ModelStageConfig, "dtype"), ("--device", ModelStageConfig, "device"),
                            ("--bos", RunConfig, "bos"), ("--data-root", RunConfig, "data_root")):
        f = {f.name: f for f in dataclasses.fields(cls)}[name]
        assert actions[flag].default == _default(f) and f.metadata["help"].replace("%", "%%") in actions[flag].help
    args = p.parse_args([])
    assert (args.model, args.adapter, args.dtype, args.device, args.bos) == ("default", None, "auto", None, "auto")


def test_run_flags_override_only_when_given(monkeypatch, tmp_path: Path) -> None:
    import interp.app.pipeline
    from interp.app.cli import build_parser

    seen = []
    monkeypatch.setattr(interp.app.pipeline, "run_pipeline",
                        lambda cfg, run_dir, **kw: seen.append(cfg) or (tmp_path / "none", tmp_path / "none"))
    for argv in (["run", "--preset", "paper"], ["run", "--preset", "paper", "--model", "m", "--adapter", "a"]):
        args = build_parser().parse_args([*argv, "--run-dir", str(tmp_path / "r")])
        assert args.func(args) == 0
    assert (seen[0].model.name, seen[0].model.adapter) == ("ai-forever/mGPT", None)  # the preset's, not the flag default
    assert (seen[1].model.name, seen[1].model.adapter) == ("m", "a")


# ----------------------------------------------------------------------------- presets: named YAML files
def test_dpo_presets_are_yaml_files_and_inherit_by_name() -> None:
    from detox_train.config import PRESET_DIR

    assert preset_names() == sorted(p.stem for p in PRESET_DIR.glob("*.yaml")) == sorted(PRESETS)
    full, lora = DPOTrainConfig.preset("paper-full"), DPOTrainConfig.preset("lora")
    assert "preset" in (PRESET_DIR / "lora.yaml").read_text()  # lora.yaml states only what differs
    assert (lora.method, lora.learning_rate, lora.warmup_steps) == ("lora", 5e-5, 20)
    assert lora.replace(method="full", learning_rate=1e-5, warmup_steps=150, lora_r=64, lora_alpha=16) == full
    with pytest.raises(ConfigError, match="unknown DPO preset 'nope'; choose one of cpu-demo, lora"):
        DPOTrainConfig.preset("nope")


def test_recipes_are_yaml_files_and_keep_their_hashes() -> None:
    from interp.default_model.build import resolve_preset
    from interp.default_model.recipe import RECIPE_DIR, RECIPES, get_recipe, recipe_names

    assert recipe_names() == sorted(p.stem for p in RECIPE_DIR.glob("*.yaml")) == sorted(RECIPES)
    # The cache keys of models already built before recipes became YAML files (and "default" became
    # "standard"): a change here rebuilds every user's cached default model.
    # Those builds trained in bf16: a bf16 build keeps its hash and folder; an fp32 one (auto on a CPU
    # without native bf16) gets its own, pinned too.
    import interp.default_model.recipe as R

    pins = {("smoke", True): "smoke-c8cac0a13dcc-", ("standard", True): "default-abf51c267fb8-",
            ("smoke", False): "smoke-258b227057cd-", ("standard", False): "default-6739f53585d4-"}
    for (name, native), prefix in pins.items():
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(R, "native_bf16", lambda device, native=native: native)
            assert get_recipe(name).precision == "auto"
            assert resolve_preset(name)[2].name.startswith(prefix), (name, native)
    assert get_recipe("standard") == type(get_recipe("standard"))()  # the standard recipe is the dataclass defaults
    with pytest.raises(ConfigError, match="recipe 'default' was renamed 'standard'"):
        get_recipe("default")


# ----------------------------------------------------------------------------- one meaning per "default"
def test_default_names_the_model_only(monkeypatch, tmp_path: Path) -> None:
    from interp.default_model.build import resolve_preset
    from interp.app.run_config import load_run_config

    monkeypatch.delenv("XDETOX_DEFAULT_PRESET", raising=False)
    assert resolve_preset()[0] == "standard"  # what load_model("default") builds
    monkeypatch.setenv("XDETOX_DEFAULT_PRESET", "smoke")
    assert resolve_preset()[0] == "smoke" and resolve_preset("standard")[0] == "standard"
    demo, smoke = load_run_config(preset="demo"), load_run_config(preset="smoke")
    assert (demo.model.name, demo.model.recipe) == ("default", None) and smoke.model.recipe == "smoke"
    (tmp_path / "old.yaml").write_text("model: {name: default, default_preset: smoke}\n")
    with pytest.raises(ConfigError, match="old.yaml: config key model.default_preset was renamed model.recipe"):
        load_run_config(config=tmp_path / "old.yaml")
    monkeypatch.setenv("XDETOX_DEFAULT_PRESET", "default")
    with pytest.raises(ConfigError, match=r"\$XDETOX_DEFAULT_PRESET=default: .*renamed 'standard'"):
        resolve_preset()
