"""Nothing evaluates model output or user data as code; checkpoints and configs load only through safe
readers; remote code is never trusted implicitly. Checked on the source (an AST walk over every
module) and by behaviour."""

import ast
from pathlib import Path

import pytest
import torch

from entropic_rl.tasks import Example
from entropic_rl.tasks.rewards import countdown
from entropic_rl.tasks.safe_eval import UnsafeExpression, evaluate
from test_train import run

SOURCE = sorted((Path(__file__).parents[1] / "src" / "entropic_rl").rglob("*.py"))
SCRIPTS = sorted((Path(__file__).parents[1] / "scripts").glob("*.py")) + sorted(
    (Path(__file__).parents[1] / "benchmarks").glob("*.py")
)
UNSAFE_MODULES = {"pickle", "cPickle", "dill", "marshal", "shelve", "joblib"}


def calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            yield node, owner, name


@pytest.mark.parametrize("path", SOURCE + SCRIPTS, ids=lambda p: p.name)
def test_no_code_evaluation_and_only_safe_loaders(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = {a.name.split(".")[0] for a in node.names} | {(getattr(node, "module", None) or "").split(".")[0]}
            assert not names & UNSAFE_MODULES, f"{path}:{node.lineno} imports {names & UNSAFE_MODULES}"
    for node, owner, name in calls(path):
        where = f"{path}:{node.lineno}"
        assert not (owner == "" and name in {"eval", "exec", "compile", "__import__"}), f"{where}: {name}()"
        if owner == "yaml":
            assert name in {"safe_load", "safe_dump", "dump"}, f"{where}: yaml.{name}"
        if owner == "torch" and name == "load":
            weights_only = [k for k in node.keywords if k.arg == "weights_only"]
            assert weights_only and getattr(weights_only[0].value, "value", None) is True, f"{where}: torch.load"
        for keyword in node.keywords:
            if keyword.arg == "trust_remote_code":
                assert getattr(keyword.value, "value", None) is not True, f"{where}: trust_remote_code=True"


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('touch /tmp/pwned')",
        "(1).__class__.__bases__[0].__subclasses__()",
        "open('/etc/passwd').read()",
        "[x for x in range(10**9)]",
        "lambda: 1",
        "9**9**9**9",
    ],
)
def test_model_output_is_parsed_never_run(text):
    with pytest.raises(UnsafeExpression):
        evaluate(text)
    assert countdown(text, Example("", "", {"numbers": [1, 2], "target": 3})) == 0.0


def test_checkpoints_hold_no_pickled_objects(tmp_path):
    run_dir, _ = run(tmp_path, "train.steps=2")
    folder = run_dir / "checkpoints" / "step_000002"
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    for name in ("optimizer.pt", "rng.pt"):  # tensors and plain containers only
        torch.load(folder / name, weights_only=True)
