import ast
import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs_and_prints_the_controllers_step(capsys):
    (block,) = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    namespace = {}
    exec(compile(block, str(README), "exec"), namespace)  # our own documentation, not model output
    printed = ast.literal_eval(capsys.readouterr().out)
    # The toy logits' entropy (about 2.76 nats at T 0.6) is far above the target 0.1: the P term alone
    # (K_p 1 times the error) is past the bound, so alpha is 1 and the integral does not wind up.
    assert printed["entropy"] == pytest.approx(namespace["window_entropy"].item()) and printed["entropy"] > 2
    assert printed["error"] == pytest.approx(printed["entropy"] - 0.1) == pytest.approx(printed["p_term"])
    assert namespace["alpha"] == printed["alpha"] == 1.0 and printed["saturated"] == 1.0 and printed["integral"] == 0.0
    grad = namespace["logits"].grad
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0  # the loss reached the logits


def test_readme_commands_match_ci():
    ci = (README.parent / ".ci" / "run").read_text()
    test_command = "bash scripts/setup.sh && .venv/bin/python -m pytest"
    assert test_command in README.read_text()
    assert ci.strip().splitlines()[-1] == test_command
