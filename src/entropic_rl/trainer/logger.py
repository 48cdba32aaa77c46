"""Run-directory logging: metrics.jsonl, samples.jsonl, TensorBoard (if installed), W&B (if asked)."""

from __future__ import annotations

import json
from pathlib import Path

from entropic_rl.trainer.config import Config
from entropic_rl.util.files import write_atomically

SAMPLES_PER_LOG = 8  # responses written to samples.jsonl each time


class RunLogger:
    def __init__(self, run_dir: Path, config: Config, resumed_at: int = 0) -> None:
        self.metrics_path = run_dir / "metrics.jsonl"
        self.samples_path = run_dir / "samples.jsonl"
        for path in (self.metrics_path, self.samples_path):
            _truncate_after(path, resumed_at)  # lines a crashed run wrote after its last checkpoint
        self.tensorboard = None
        if config.log.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                pass
            else:
                self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resumed_at + 1)
        self.wandb = None
        if config.log.wandb:
            try:
                import wandb
            except ImportError:
                raise ValueError("log.wandb: W&B logging needs the wandb package (pip install wandb)") from None
            self.wandb = wandb.init(
                project=config.log.wandb_project,
                name=run_dir.name,
                config=config.to_dict(),
                resume="allow",
                id=run_dir.name,
            )

    def log(self, step: int, metrics: dict[str, float]) -> None:
        _append(self.metrics_path, {"step": step, **metrics})
        if self.tensorboard is not None:
            for name, value in metrics.items():
                self.tensorboard.add_scalar(name, value, step)
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def samples(self, step: int, examples: list, responses: list[str], rewards, group_size: int) -> None:
        for i in range(min(SAMPLES_PER_LOG, len(responses))):
            example = examples[i // group_size]
            _append(
                self.samples_path,
                {
                    "step": step,
                    "prompt": example.prompt,
                    "answer": example.answer,
                    "response": responses[i],
                    "reward": float(rewards[i]),
                },
            )

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.finish()


def read_metrics(run_dir: Path, skipped: bool = False) -> list[dict]:
    """The records of the steps that trained (a skipped step's record has only its skip counts),
    or with ``skipped`` every step's."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise ValueError(f"{run_dir}: no metrics.jsonl (is it a run directory?)")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return records if skipped else [r for r in records if not r.get("optim/skipped")]


def _append(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_after(path: Path, step: int) -> None:
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line torn by a crash mid-write
            continue
        if record["step"] <= step:
            kept.append(line)
    write_atomically(path, "".join(line + "\n" for line in kept))
