

def test_policy_is_in_every_stage_key_and_the_run_manifest(tmp_path) -> None:
    import json

    from interp.pipeline import STAGES, Pipeline
    from interp.run_config import load_run_config

    auto = Pipeline(load_run_config(preset="smoke"), tmp_path / "a", log=lambda _m: None)
    always = Pipeline(load_run_config(preset="smoke", overrides={"bos": "always"}), tmp_path / "b",
                      log=lambda _m: None)
    for stage in STAGES:
        same = auto.stage_key(stage) == always.stage_key(stage)
        assert same == (stage == "model"), stage  # the weights do not depend on it; everything after does
    always.run(only=["model"])
    man = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert man["tokenization"] == {"bos_policy": "always"} and man["config"]["bos"] == "always"
    assert token_rule(always.base_model()).add_bos  # the loaded model carries the run's policy
