"""The configuration of a training run: each layer's section composed (``model`` from models/,
``task`` from tasks/, ``method`` from the method's own file) with the trainer's own sections.

Loaded from defaults, then a YAML file or a named preset (a file may name a ``base`` to build on),
then ``key.sub=value`` overrides (``util.options``). Every field is validated; an error names the
field and where it came from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

from entropic_rl.core import AGG_MODES
from entropic_rl.methods import METHODS, MethodConfig, method_class
from entropic_rl.models import ModelConfig, check_sampler, check_sampling
from entropic_rl.tasks import TaskConfig
from entropic_rl.util.options import (
    ConfigError,
    build,
    check_at_least,
    check_choice,
    describe,
    merge,
    option,
    parse_overrides,
    read_yaml,
)

PRESETS = Path(__file__).parent / "presets"
DEFAULT_PRESET = "embedded"  # what `entropic train` loads when given no --config


@dataclass
class RolloutConfig:
    prompts_per_step: int = option(16, "prompts sampled per rollout step")
    group_size: int = option(8, "samples per prompt (the GRPO group)")
    temperature: float = option(1.0, "sampling temperature; log-probs and entropies use the same one")
    top_p: float = option(1.0, "nucleus sampling")
    max_new_tokens: int = option(
        14, "longest response (the embedded default's longest, 99+99=198, is 9 tokens before spaces)"
    )
    min_new_tokens: int = option(0, "no <eos> before this many tokens (benchmarks: max_new_tokens, full length)")
    sampler: str = option(
        "lean",
        "lean: the trainer's decoding loop (the same draws as generate, less work) | generate: transformers' generate",
    )
    cache: str = option(
        "dynamic",
        "the generate sampler's KV cache: dynamic | static (fixed size; on a GPU transformers compiles decoding)",
    )

    def __post_init__(self) -> None:
        check_sampler(self.sampler, self.cache)
        check_at_least("prompts_per_step", self.prompts_per_step, 1)
        check_at_least("group_size", self.group_size, 2)
        check_at_least("max_new_tokens", self.max_new_tokens, 1)
        check_at_least("min_new_tokens", self.min_new_tokens, 0)
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(f"min_new_tokens must be <= max_new_tokens, got {self.min_new_tokens}")
        check_sampling(self.temperature, self.top_p)


@dataclass
class TrainConfig:
    steps: int = option(300, "rollout steps")
    lr: float = option(1e-4, "AdamW learning rate")
    warmup_steps: int = option(0, "optimizer steps of linear warm-up")
    lr_schedule: str = option("constant", "constant | cosine (after warm-up, to zero at the last step)")
    weight_decay: float = option(0.0, "AdamW weight decay")
    grad_clip: float = option(1.0, "max gradient norm; 0 disables")
    mini_batches: int = option(1, "optimizer steps per rollout and epoch; > 1 or epochs > 1 is off-policy")
    epochs: int = option(1, "passes over each rollout")
    micro_batch_size: int = option(64, "sequences per forward/backward; gradients accumulate")
    advantage: str = option("grpo", "grpo: (R - mean) / (std + 1e-6); drgrpo: R - mean")
    agg: str = option("token-mean", "loss aggregation: " + " | ".join(AGG_MODES))
    clip_low: float = option(0.2, "PPO clip: ratio lower bound 1 - clip_low")
    clip_high: float = option(0.2, "PPO clip: ratio upper bound 1 + clip_high (0.28: clip-higher)")
    clip_c: float = option(3.0, "dual clip: the loss of a negative-advantage token is at most -A * clip_c")
    kl_coef: float = option(0.0, "KL to the frozen initial policy (k3 estimator); 0: no reference model")
    max_consecutive_skips: int = option(
        3, "stop after this many steps in a row skipped for non-finite logits, log-probs, loss or gradients"
    )
    gradient_checkpointing: bool = option(
        False, "recompute activations in the backward pass: less memory, one more forward (TRL's default: on)"
    )

    def __post_init__(self) -> None:
        for name in ("steps", "mini_batches", "epochs", "micro_batch_size", "max_consecutive_skips"):
            check_at_least(name, getattr(self, name), 1)
        check_at_least("warmup_steps", self.warmup_steps, 0)
        check_choice("lr_schedule", self.lr_schedule, ("constant", "cosine"))
        check_choice("advantage", self.advantage, ("grpo", "drgrpo"))
        check_choice("agg", self.agg, AGG_MODES)
        for name in ("lr", "weight_decay", "grad_clip", "clip_low", "clip_high", "kl_coef"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not self.clip_low <= 1:
            raise ValueError(f"clip_low must be <= 1 (the ratio's lower bound 1 - clip_low >= 0), got {self.clip_low}")
        if not self.clip_c > 1:
            raise ValueError(f"clip_c must be > 1, got {self.clip_c}")


@dataclass
class LogConfig:
    out_dir: str | None = option(None, "run directory; null: runs/<method>-<task>-seed<seed>")
    sample_every: int = option(10, "steps between sample generations written to samples.jsonl; 0: never")
    save_every: int = option(20, "steps between checkpoints; the last step is always saved")
    keep_last: int = option(2, "checkpoints kept")
    tensorboard: bool = option(True, "TensorBoard events, when tensorboard is installed")
    wandb: bool = option(False, "log to Weights & Biases (needs wandb)")
    wandb_project: str = option("entropic-rl", "the W&B project")

    def __post_init__(self) -> None:
        check_at_least("sample_every", self.sample_every, 0)
        check_at_least("save_every", self.save_every, 1)
        check_at_least("keep_last", self.keep_last, 1)


@dataclass
class EvalConfig:
    """Validation during training: the evaluation of ``entropic eval`` every ``every`` steps,
    with the rollout's sampling settings, logged to metrics.jsonl."""

    every: int = option(0, "steps between validations (and after the last step); 0: never")
    data: list[str] = option(factory=list, help="files; empty: held-out problems of the synthetic task")
    problems: int = option(64, "the first this many problems of each data set")
    n: int = option(4, "samples per problem")

    def __post_init__(self) -> None:
        check_at_least("every", self.every, 0)
        check_at_least("problems", self.problems, 1)
        check_at_least("n", self.n, 1)


def _method_config_class(name: str | None) -> type[MethodConfig]:
    return method_class(name or "entropic").config_class


@dataclass
class Config:
    seed: int = option(0, "seed of the run: model init, sampling, data order")
    model: ModelConfig = option(factory=ModelConfig, help="the policy")
    task: TaskConfig = option(factory=TaskConfig, help="the task and its reward")
    rollout: RolloutConfig = option(factory=RolloutConfig, help="sampling")
    train: TrainConfig = option(factory=TrainConfig, help="the update")
    method: MethodConfig = option(
        factory=lambda: _method_config_class(None)(),
        help="the entropy-control method",
        select=_method_config_class,
    )
    log: LogConfig = option(factory=LogConfig, help="the run directory")
    eval: EvalConfig = option(factory=EvalConfig, help="validation during training")

    def __post_init__(self) -> None:
        if self.task.name != "file" and self.task.wraps_prompts and self.model.path is None:
            raise ValueError(
                "task.template: the embedded model's tokenizer knows only its task's characters; a template for "
                f"the {self.task.name} task needs a model given by model.path (e.g. smollm2)"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def off_policy(self) -> bool:
        return self.train.mini_batches > 1 or self.train.epochs > 1

    def run_dir(self) -> Path:
        return Path(self.log.out_dir or f"runs/{self.method.name}-{self.task.name}-seed{self.seed}")


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    trail: list[str] | None = None,
    then: list[str] | tuple[str, ...] = (),
) -> Config:
    """Defaults, then ``path`` (a YAML file or a preset name, with its ``base`` chain), then the
    ``key.sub=value`` overrides, then those of ``then`` as a layer of their own (``entropic compare``
    sets each run's method there: a different ``method.name`` drops the method fields before it).
    ``trail``, when given, receives a description of each source."""
    trail = [] if trail is None else trail
    data = _load_source(str(path), Path.cwd(), trail, depth=0) if path is not None else {}
    for layer in (overrides, then):
        if layer:
            data = merge(data, parse_overrides(Config, layer))
            trail.append("overrides " + " ".join(layer))
    try:
        return build(Config, data)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (from {' + '.join(trail) or 'defaults'})") from None


def _load_source(name: str, relative_to: Path, trail: list[str], depth: int) -> dict:
    """A preset or a YAML file, on top of the ``base`` it names, if any."""
    if depth > 8:
        raise ConfigError(f"{name}: base chain too long (a cycle?)")
    preset = PRESETS / f"{name}.yaml"
    looks_like_a_name = "/" not in name and not name.endswith((".yaml", ".yml"))
    path = preset if looks_like_a_name and preset.is_file() else relative_to / name
    if looks_like_a_name and not path.is_file():
        raise ConfigError(f"{name}: neither a YAML file nor a preset (presets: {', '.join(preset_names())})")
    data = read_yaml(path)
    base = data.pop("base", None)
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(f"{path}: base must be a preset name or a file path, got {base!r}")
        data = merge(_load_source(base, path.parent, trail, depth + 1), data)
    trail.append(f"preset {name} ({path})" if path == preset else str(path))
    return data


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def dump_config(config: Config, path: Path, trail: list[str] = ()) -> None:
    """The complete configuration of a run (what ``--resume`` reads back), with where it came from."""
    header = "".join(f"# from: {source}\n" for source in trail)
    path.write_text(header + yaml.safe_dump(config.to_dict(), sort_keys=False))


def config_help() -> str:
    """The ``--help`` epilog: every field with its default and meaning, and each method's fields."""
    lines = ["configuration (override with key.sub=value; shown: default (type) meaning):"]
    lines += describe(Config)
    for name, method in METHODS.items():
        if name != "entropic":
            fields = describe(method.config_class, "method.")
            lines.append(f"  method.name={name}:" + ("" if len(fields) > 1 else " no other fields"))
            lines += [f"  {line}" for line in fields if not line.lstrip().startswith("method.name ")]
    lines.append(
        f"presets (--config NAME): {', '.join(preset_names())}; with no --config, entropic train loads {DEFAULT_PRESET}"
    )
    return "\n".join(lines)
