"""Bad input, fuzzed: every configuration field with values of the wrong type, out of range, NaN or
inf, unknown keys and methods; malformed YAML; broken data files. Each is one clear error (a
ValueError naming the field or file and line; on the command line exit code 2, one line, no
traceback) and writes nothing."""

import dataclasses
import json

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from entropic_rl.cli import main
from entropic_rl.methods import METHODS, method_class
from entropic_rl.tasks.datasets import FileTask
from entropic_rl.trainer.config import Config, load_config

SECTIONS = {
    f.name: f.default_factory() for f in dataclasses.fields(Config) if f.default_factory is not dataclasses.MISSING
}
FIELDS = sorted(
    [f"{section}.{f.name}" for section, value in SECTIONS.items() for f in dataclasses.fields(value)]
    + [f"method.{f.name}" for f in dataclasses.fields(method_class("entropic").config_class)]
    + ["seed"]
)
VALUES = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e400", "[1, 2]", "{a: 1}", "null", "yes", "''", "x" * 300]),
    st.text(max_size=20),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.floats().map(repr),
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(field=st.sampled_from(FIELDS), value=VALUES)
@example(field="method.name", value="[1, 2]")  # a list as a method's name: once a TypeError (unhashable)
def test_any_value_of_any_field_loads_or_is_rejected_naming_the_field(field, value):
    try:
        load_config(overrides=[f"{field}={value}"])
    except ValueError as exc:
        assert field.split(".")[-1] in str(exc), (field, value, str(exc))  # a cross-field check names both


# Every numeric field of the configuration and of every method, with the method that has it.
NUMERIC = sorted(
    {
        (f"{section}.{f.name}", None)
        for section, value in SECTIONS.items()
        for f in dataclasses.fields(value)
        if "float" in str(f.type) or "int" in str(f.type)
    }
    | {
        (f"method.{f.name}", name)
        for name, cls in METHODS.items()
        for f in dataclasses.fields(cls.config_class)
        if "float" in str(f.type) or "int" in str(f.type)
    },
    key=str,
)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", ".inf", "-.nan"])
@pytest.mark.parametrize(("field", "method"), NUMERIC)
def test_every_non_finite_number_is_refused_naming_its_field(field, method, value):
    with pytest.raises(ValueError) as refused:
        load_config(overrides=[*([f"method.name={method}"] if method else []), f"{field}={value}"])
    assert str(refused.value).startswith(f"{field}: expected"), str(refused.value)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_default_written_out_loads_as_itself(method):
    base = load_config(overrides=[f"method.name={method}"])
    values = {
        f"{s}.{f.name}": getattr(getattr(base, s), f.name)
        for s in SECTIONS
        for f in dataclasses.fields(getattr(base, s))
    }
    values |= {f"method.{f.name}": getattr(base.method, f.name) for f in dataclasses.fields(base.method)}
    written = [
        f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
        for key, value in values.items()
    ]
    assert load_config(overrides=[f"method.name={method}", *written]) == base


@FUZZ
@given(key=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_.", min_size=1, max_size=20))
def test_unknown_keys_are_rejected(key):
    if key.strip(".") in FIELDS or key.strip(".") in SECTIONS or "" in key.split("."):
        return
    try:
        load_config(overrides=[f"{key}=1"])
    except ValueError as exc:
        assert "field" in str(exc) or "section" in str(exc) or "expected" in str(exc), str(exc)
    else:
        raise AssertionError(f"{key}=1 was accepted")


@FUZZ
@given(text=st.text(max_size=200))
def test_any_yaml_file_loads_or_names_the_file(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("yaml") / "config.yaml"
    path.write_text(text)
    try:
        load_config(path)
    except ValueError as exc:
        assert "config.yaml" in str(exc), str(exc)


LINES = st.one_of(
    st.binary(max_size=60),
    st.builds(
        lambda d: json.dumps(d).encode(),
        st.dictionaries(
            st.sampled_from(["prompt", "answer", "question", "x"]),
            st.one_of(st.text(max_size=5), st.integers(), st.none(), st.lists(st.integers(), max_size=2)),
        ),
    ),
    st.just(b'{"prompt": "1+1=", "answer": "2"}'),
    st.just(b"x" * 10_000_000),
)


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(LINES, max_size=4))
def test_any_data_file_loads_or_names_the_file_and_line(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    path.write_bytes(b"\n".join(lines))
    try:
        task = FileTask(str(path))
    except ValueError as exc:
        assert "train.jsonl" in str(exc), str(exc)
    else:
        assert all(isinstance(e.prompt, str) and isinstance(e.answer, str) for e in task.examples_list)


ARGUMENT = st.one_of(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_.=-0123456789 ", max_size=15),
    st.sampled_from(["--config", "--resume", "--seeds", "--methods", "--experiment", "--bogus", "-x", "=", "a=b=c"]),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(["train", "compare", "eval", "simulate", "plot"]), args=st.lists(ARGUMENT, max_size=4))
def test_any_bad_command_line_is_exit_code_2_without_a_traceback(capsys, tmp_path_factory, command, args):
    """Arguments that cannot all be valid (an unknown key is always added): exit code 2 and a message,
    never a traceback, and nothing is trained."""
    out = tmp_path_factory.mktemp("cli")
    tail = ["not_a_field.x=1"] if command != "plot" else [str(out / "missing-run")]
    try:
        code = main([command, *args, *tail])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "error" in err, (command, args, err)
    assert not any(out.iterdir())
