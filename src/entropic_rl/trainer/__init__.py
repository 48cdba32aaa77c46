"""The built-in GRPO trainer with pluggable entropy-control methods, its configuration, run
directory, checkpoints and plots."""

from entropic_rl.trainer.config import Config, load_config
from entropic_rl.trainer.loop import train

__all__ = ["Config", "load_config", "train"]
