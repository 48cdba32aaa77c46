"""The built-in GRPO trainer with pluggable entropy-control methods."""

from entropic_rl.trainer.loop import train

__all__ = ["train"]
