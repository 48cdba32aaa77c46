"""The one configuration syntax of every command: key.sub=value overrides, YAML files and presets, the
method section chosen by its name, and the errors that name the field."""

import pytest

from entropic_rl.evaluation import EvalCommand
from entropic_rl.methods import EntroPICConfig
from entropic_rl.trainer.config import Config, load_config
from entropic_rl.util.options import ConfigError, build, describe, merge, parse_overrides


def control(method) -> tuple:
    return method.gains, method.kp, method.ki, method.target_entropy, method.threshold


def test_the_method_defaults_are_the_authors_everywhere_and_the_preset_is_visible():
    for config in (EntroPICConfig(), Config().method, load_config().method):
        assert control(config) == ("fixed", 1.0, 0.01, 0.1, 0.95)  # the authors' gains, target and threshold
    trail = []
    assert control(load_config("embedded", trail=trail).method) == ("fixed", 10.0, 0.1, 0.3, 0.8)
    assert trail[0].startswith("preset embedded (") and trail[0].endswith("presets/embedded.yaml)")


def test_gains_auto_is_chosen_by_name_and_a_fixed_gain_not_given_is_the_authors():
    assert control(EntroPICConfig(gains="auto"))[:3] == ("auto", None, None)
    assert control(EntroPICConfig(kp=10.0))[:3] == ("fixed", 10.0, 0.01)
    assert control(EntroPICConfig(ki=0.0))[:3] == ("fixed", 1.0, 0.0)
    with pytest.raises(ConfigError, match=r"method\.gains must be one of \('fixed', 'auto'\), got 'manual'"):
        load_config(overrides=["method.gains=manual"])


def test_an_explicit_gains_auto_over_a_file_with_fixed_gains_leaves_them_unused_and_says_so(tmp_path, caplog):
    from entropic_rl.methods import EntroPIC

    (tmp_path / "fixed.yaml").write_text("method:\n  name: entropic\n  kp: 5.0\n  target_entropy: 0.3\n")
    config = load_config(tmp_path / "fixed.yaml", ["method.gains=auto"]).method
    assert (config.gains, config.kp, config.ki) == ("auto", 5.0, None)  # as given: the run's config.yaml shows it
    with caplog.at_level("WARNING"):
        controller = EntroPIC(config).controller
    assert (controller.gains, controller.kp, controller.ki) == ("auto", None, None)
    assert "method.kp (5.0) and method.ki (None) are not used" in caplog.text


def test_a_section_given_a_value_means_its_name_or_says_what_to_type():
    assert load_config(overrides=["method=grpo"]).method.name == "grpo"
    assert load_config(overrides=["task=countdown"]).task.name == "countdown"
    with pytest.raises(ConfigError, match=r"model is a section; set its fields: model\.path, model\.dtype"):
        load_config(overrides=["model=smollm2"])


def test_switching_method_drops_the_earlier_method_fields():
    config = load_config("embedded", ["method.name=grpo"])
    assert config.method.name == "grpo"  # the preset's target/gains belong to entropic
    config = load_config("embedded", ["method.kp=3"])
    assert (config.method.name, config.method.kp, config.method.threshold) == ("entropic", 3.0, 0.8)
    assert merge({"method": {"name": "a", "x": 1}}, {"method": {"y": 2}}) == {"method": {"name": "a", "x": 1, "y": 2}}


def test_text_fields_keep_text_that_yaml_would_read_otherwise():
    config = load_config(overrides=["task.template={prompt}", "log.out_dir=null", "task.reward=123"])
    assert (config.task.template, config.log.out_dir, config.task.reward) == ("{prompt}", None, "123")
    command = build(EvalCommand, parse_overrides(EvalCommand, ["template=Q: {prompt}", "k=1,2,4", "data=a.jsonl"]))
    assert (command.template, command.k, command.data) == ("Q: {prompt}", [1, 2, 4], ["a.jsonl"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.lr"], r"expected key=value"),
        (["train.lr.x=1"], r"train\.lr is a value, not a section"),
        (["bogus=1"], r"bogus is not a field; the config has seed, model"),
        (["method.name=nope"], r"method\.name: unknown method 'nope'"),
        (["train.steps=1.5"], r"train\.steps: expected int, got 1\.5"),
        (["eval.data=[1]"], r"eval\.data\[0\]: expected str, got 1"),
    ],
)
def test_bad_overrides_name_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides)


def test_a_file_builds_on_its_base_and_errors_name_the_file(tmp_path):
    (tmp_path / "parent.yaml").write_text("base: embedded\nrollout:\n  group_size: 4\n")
    (tmp_path / "child.yaml").write_text("base: parent.yaml\ntrain:\n  steps: 7\n")
    trail = []
    config = load_config(tmp_path / "child.yaml", trail=trail)
    assert (config.method.threshold, config.rollout.group_size, config.train.steps) == (0.8, 4, 7)
    assert trail[0].startswith("preset embedded") and trail[1:] == [
        str(tmp_path / n) for n in ("parent.yaml", "child.yaml")
    ]
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="base chain too long"):
        load_config(tmp_path / "loop.yaml")
    with pytest.raises(ConfigError, match=r"embeded: neither a YAML file nor a preset \(presets: embedded\)"):
        load_config("embeded")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: expected a mapping at the top level, got list"):
        load_config(tmp_path / "list.yaml")


def test_help_lists_every_field_with_its_default_and_meaning():
    lines = "\n".join(describe(Config))
    assert "method.gains = fixed  (str) fixed: kp and ki; auto: the gain tunes itself to the run" in lines
    assert "method.kp = 1.0  (float or null) proportional gain K_p (fixed gains; unset: the authors' 1)" in lines
    assert "rollout.group_size = 8  (int) samples per prompt" in lines
    assert all(line.count("(") >= 1 for line in describe(EvalCommand))


def test_validating_a_config_builds_no_controller(monkeypatch):
    from entropic_rl.core import controller
    from entropic_rl.methods import EntroPIC

    built = []
    real_init = controller.PIController.__init__
    monkeypatch.setattr(
        controller.PIController, "__init__", lambda self, *a, **k: built.append(1) or real_init(self, *a, **k)
    )
    config = load_config("embedded", ["method.kp=3"]).method
    with pytest.raises(ConfigError, match=r"method\.ki must be a finite number >= 0"):
        load_config("embedded", ["method.ki=-1"])
    assert built == []
    EntroPIC(config)
    assert built == [1]
