"""Run configuration: typed dataclasses, loaded from YAML, overridden with ``key.sub=value``.

Every field is validated; an error names the field (``rollout.group_size``) and, for a value
from a file, the file. The ``method`` section is validated against the config class of the
method named by ``method.name`` (each method declares its own fields).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from entropic_rl.core import AGG_MODES
from entropic_rl.methods import MethodConfig, method_class
from entropic_rl.tasks import resolve_template


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field."""


@dataclass
class ModelConfig:
    path: str | None = None  # a local Hugging Face model folder; null: the embedded default
    dtype: str = "float32"  # float32 | bfloat16 | float16
    chat_template: str = "auto"  # auto: use the tokenizer's chat template if it has one; never
    device: str = "auto"  # auto: cuda when available, else cpu
    warm_start_steps: int = 1000  # embedded default only: at most this many supervised steps before RL
    warm_start_accuracy: float = 0.3  # embedded default only: stop once held-out sampled accuracy reaches this

    def __post_init__(self) -> None:
        _choice("dtype", self.dtype, ("float32", "bfloat16", "float16"))
        _choice("chat_template", self.chat_template, ("auto", "never"))
        _at_least("warm_start_steps", self.warm_start_steps, 0)
        if not 0 <= self.warm_start_accuracy <= 1:
            raise ValueError(f"warm_start_accuracy must be in [0, 1], got {self.warm_start_accuracy}")


@dataclass
class TaskConfig:
    name: str = "arithmetic"  # arithmetic | countdown | file
    difficulty: int = 2  # arithmetic: digits per operand; countdown: how many numbers
    path: str | None = None  # file: a .jsonl or .parquet file
    prompt_field: str | None = None  # file: null: the first of prompt, question, problem
    answer_field: str = "answer"
    template: str = "plain"  # file: plain | boxed | a string containing {prompt}
    reward: str | None = None  # null: the task's own; a registered name or "module:function"

    def __post_init__(self) -> None:
        _choice("name", self.name, ("arithmetic", "countdown", "file"))
        if self.name == "file" and not self.path:
            raise ValueError("path is required when name is file")
        resolve_template(self.template)


@dataclass
class RolloutConfig:
    prompts_per_step: int = 16
    group_size: int = 8  # samples per prompt
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 14  # the embedded default's longest response, 99+99=198, is 9 tokens before spaces

    def __post_init__(self) -> None:
        _at_least("prompts_per_step", self.prompts_per_step, 1)
        _at_least("group_size", self.group_size, 2)
        _at_least("max_new_tokens", self.max_new_tokens, 1)
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass
class TrainConfig:
    steps: int = 300  # rollout steps
    lr: float = 1e-4
    warmup_steps: int = 0  # optimizer steps of linear warm-up
    lr_schedule: str = "constant"  # constant | cosine (after warm-up, to zero at the last step)
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max gradient norm; 0 disables
    mini_batches: int = 1  # optimizer steps per rollout and epoch; > 1 or epochs > 1 is off-policy
    epochs: int = 1
    micro_batch_size: int = 64  # sequences per forward/backward; gradients accumulate
    advantage: str = "grpo"  # grpo: (R - mean) / (std + 1e-6); drgrpo: R - mean
    agg: str = "token-mean"
    clip_low: float = 0.2
    clip_high: float = 0.2
    clip_c: float = 3.0
    kl_coef: float = 0.0  # KL to the frozen initial policy (k3 estimator); 0: no reference model

    def __post_init__(self) -> None:
        for name in ("steps", "mini_batches", "epochs", "micro_batch_size"):
            _at_least(name, getattr(self, name), 1)
        _at_least("warmup_steps", self.warmup_steps, 0)
        _choice("lr_schedule", self.lr_schedule, ("constant", "cosine"))
        _choice("advantage", self.advantage, ("grpo", "drgrpo"))
        _choice("agg", self.agg, AGG_MODES)
        for name in ("lr", "weight_decay", "grad_clip", "clip_low", "clip_high", "kl_coef"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not self.clip_c > 1:
            raise ValueError(f"clip_c must be > 1, got {self.clip_c}")


@dataclass
class LogConfig:
    out_dir: str | None = None  # null: runs/<method>-<task>-seed<seed>
    sample_every: int = 10  # steps between sample generations written to samples.jsonl; 0: never
    save_every: int = 20  # steps between checkpoints; the last step is always saved
    keep_last: int = 2  # checkpoints kept
    tensorboard: bool = True  # when tensorboard is installed
    wandb: bool = False
    wandb_project: str = "entropic-rl"

    def __post_init__(self) -> None:
        _at_least("sample_every", self.sample_every, 0)
        _at_least("save_every", self.save_every, 1)
        _at_least("keep_last", self.keep_last, 1)


@dataclass
class EvalConfig:
    """Validation during training: the evaluation of ``entropic eval`` every ``every`` steps,
    with the rollout's sampling settings, logged to metrics.jsonl."""

    every: int = 0  # steps between validations (and after the last step); 0: never
    data: list[str] = field(default_factory=list)  # files; empty: held-out problems of the synthetic task
    problems: int = 64  # the first this many problems of each data set
    n: int = 4  # samples per problem

    def __post_init__(self) -> None:
        _at_least("every", self.every, 0)
        _at_least("problems", self.problems, 1)
        _at_least("n", self.n, 1)


@dataclass
class Config:
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    method: MethodConfig = field(default_factory=lambda: method_class("entropic").config_class())
    log: LogConfig = field(default_factory=LogConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def off_policy(self) -> bool:
        return self.train.mini_batches > 1 or self.train.epochs > 1

    def run_dir(self) -> Path:
        return Path(self.log.out_dir or f"runs/{self.method.name}-{self.task.name}-seed{self.seed}")


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then the YAML file (if any), then ``key.sub=value`` overrides (values parsed as YAML)."""
    data: dict = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        data = loaded or {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key.sub=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        _set_path(data, key.split("."), value, item)
    try:
        return _build(Config, data, "")
    except ConfigError as exc:
        raise ConfigError(f"{exc} (from {source}{' and overrides' if overrides else ''})") from None


def dump_config(config: Config, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def _set_path(data: dict, keys: list[str], value, item: str) -> None:
    for key in keys[:-1]:
        node = data.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {key} is not a section")
        data = node
    data[keys[-1]] = value


def _build(cls: type, data, prefix: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    section = prefix.rstrip(".") or "config"
    if issubclass(cls, MethodConfig):
        try:
            cls = method_class(data.get("name", "entropic")).config_class
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        section = f"method {data.get('name', 'entropic')!r}"
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown field; {section} has {names}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, hint, f"{prefix}{name}")
    try:
        return cls(**kwargs)
    except ValueError as exc:  # __post_init__ messages start with the field name
        raise ConfigError(f"{prefix}{exc}") from None


def _coerce(value, hint, name: str):
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{name}: must not be null")
    for option in options:
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option is float and isinstance(value, str) and _is_float(value):  # YAML reads 3e-3 as a string
            return float(value)
        if option is str and isinstance(value, str):
            return value
        if option is dict and isinstance(value, dict):
            return value
        if typing.get_origin(option) is list:  # list[str]: a YAML list, or one string
            items = [value] if isinstance(value, str) else value
            if isinstance(items, list) and all(isinstance(v, str) for v in items):
                return list(items)
    expected = " or ".join("null" if o is type(None) else o.__name__ for o in options)
    raise ConfigError(f"{name}: expected {expected}, got {value!r}")


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _choice(name: str, value, options) -> None:
    if value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}")


def _at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
