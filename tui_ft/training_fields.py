"""The `training:` keys a method accepts: the fields of its TRL config class (transformers'
TrainingArguments for classification), as a plain table.

Reading the table means importing trl (and with it transformers and torch, several seconds), so it is
computed once per installed trl/transformers pair and cached as JSON in the workspace. The UI and the
recipe checks read the cache; only the first call on a new install pays for the import.
"""

from __future__ import annotations

import enum
import json
import os
import re
import types
import typing
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

# method -> (module, class) of its TRL configuration class; classification has no TRL trainer and is
# configured by transformers' own TrainingArguments (its trainer is transformers.Trainer)
CONFIG_CLASSES: dict[str, tuple[str, str]] = {
    "sft": ("trl", "SFTConfig"),
    "dpo": ("trl", "DPOConfig"),
    "kto": ("trl", "KTOConfig"),
    "reward": ("trl", "RewardConfig"),
    "grpo": ("trl", "GRPOConfig"),
    "rloo": ("trl", "RLOOConfig"),
    "orpo": ("trl.experimental.orpo", "ORPOConfig"),
    "classify": ("transformers", "TrainingArguments"),
}

# Kinds a value may take; a field allows one or more.
KINDS = ("bool", "int", "float", "str", "dict", "list", "null")


_POSSIBLE = re.compile(r"Possible values are:?\s*((?:`'?[\w\-]+'?`[,\s]*(?:and|or)?\s*)+)")
_QUOTED = re.compile(r"`'?([\w\-]+)'?`")


@dataclass(frozen=True)
class TrainingField:
    name: str
    kinds: tuple[str, ...]
    choices: tuple[str, ...] | None
    default: Any
    help: str

    @property
    def item_choices(self) -> tuple[str, ...] | None:
        """For a list field whose TRL help lists its possible values (DPO's `loss_type`): those values."""
        if "list" not in self.kinds:
            return None
        found = _POSSIBLE.search(self.help)
        names = _QUOTED.findall(found.group(1)) if found else []
        return tuple(names) if len(names) > 1 else None

    def describe_type(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        return " or ".join(k if k != "null" else "null" for k in self.kinds)


def _kinds_of(annotation: Any) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
    """Reduce a dataclass annotation to the value kinds YAML can express, and choices for enums."""
    kinds: list[str] = []
    choices: list[str] | None = None
    origin = typing.get_origin(annotation)
    members = typing.get_args(annotation) if origin in (typing.Union, types.UnionType) else (annotation,)
    for member in members:
        m_origin = typing.get_origin(member)
        if member is type(None):
            kinds.append("null")
        elif member is bool:
            kinds.append("bool")
        elif member is int:
            kinds.append("int")
        elif member is float:
            kinds.append("float")
        elif member is str:
            kinds.append("str")
        elif member is dict or m_origin is dict:
            kinds.append("dict")
        elif member is list or m_origin is list:
            kinds.append("list")
        elif m_origin is typing.Literal:
            for arg in typing.get_args(member):
                if arg is False:
                    kinds.append("bool")
                else:
                    kinds.append(type(arg).__name__ if type(arg).__name__ in KINDS else "str")
        elif isinstance(member, type) and issubclass(member, enum.Enum):
            choices = [str(e.value) for e in member]
        else:
            kinds.append("object")
    if choices is not None and "str" in kinds:
        kinds.remove("str")  # `Enum | str` accepts the enum's values only (TrainingArguments checks)
    if choices is not None:
        kinds.append("str")
    return tuple(dict.fromkeys(kinds)), (tuple(choices) if choices is not None else None)


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)


def _introspect(method: str) -> list[dict[str, Any]]:
    import dataclasses
    import importlib

    from tui_ft.library_noise import quiet_library_noise

    quiet_library_noise()
    module_name, class_name = CONFIG_CLASSES[method]
    cls = getattr(importlib.import_module(module_name), class_name)
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name.startswith("_"):
            continue
        kinds, choices = _kinds_of(hints.get(f.name, Any))
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        rows.append(
            {
                "name": f.name,
                "kinds": list(kinds),
                "choices": list(choices) if choices else None,
                "default": _jsonable(default),
                "help": str(f.metadata.get("help", "")).strip(),
            }
        )
    return rows


def _cache_file(cache_dir: Path) -> Path:
    versions = "-".join(metadata.version(p) for p in ("trl", "transformers"))
    return cache_dir / f"training-fields-{versions}.json"


def training_fields(method: str, cache_dir: Path | None = None) -> dict[str, TrainingField]:
    """The fields of `method`'s TRL config class, by name (cached per trl/transformers version)."""
    if method not in CONFIG_CLASSES:
        raise KeyError(method)
    table: dict[str, Any] | None = None
    cache = _cache_file(cache_dir) if cache_dir is not None else None
    if cache is not None and cache.exists():
        try:
            table = json.loads(cache.read_text())
        except (OSError, ValueError):
            table = None
    if table is None or method not in table:
        table = dict(table or {})
        table[method] = _introspect(method)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(table))
            os.replace(tmp, cache)
    return {
        row["name"]: TrainingField(
            name=row["name"],
            kinds=tuple(row["kinds"]),
            choices=tuple(row["choices"]) if row["choices"] else None,
            default=row["default"],
            help=row["help"],
        )
        for row in table[method]
    }


class CoercionError(ValueError):
    pass


@dataclass(frozen=True)
class Range:
    """The values a numeric training key accepts: `low`/`high` bounds (open or closed) and special values
    that mean something else (`max_steps: -1`: train for num_train_epochs)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the bound itself is refused (`> 0`)
    high_open: bool = False
    special: tuple[tuple[float, str], ...] = ()

    def describe(self) -> str:
        lo = None if self.low is None else ("(" if self.low_open else "[") + f"{self.low:g}"
        hi = None if self.high is None else f"{self.high:g}" + (")" if self.high_open else "]")
        if lo and hi:
            text = f"in {lo}, {hi}"
        elif lo:
            text = (">" if self.low_open else ">=") + f" {self.low:g}"
        else:
            text = ("<" if self.high_open else "<=") + f" {self.high:g}"
        return text + "".join(f", or {v:g} ({why})" for v, why in self.special)

    def admits(self, value: float) -> bool:
        if any(value == v for v, _ in self.special):
            return True
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))


_POSITIVE = Range(low=0, low_open=True)
_NON_NEGATIVE = Range(low=0)
_AT_LEAST_ONE = Range(low=1)
_FRACTION = Range(low=0, high=1)
_BELOW_ONE = Range(low=0, high=1, high_open=True)

# Ranges of the numeric `training:` keys, for every method whose config class has the key. Most are not
# declared in the config classes' metadata: they are what the optimizer, the scheduler or the trainer
# refuse later (torch.optim: lr, betas, eps, weight_decay; TrainingArguments.__post_init__: warmup_steps
# >= 0, steps > 0), said at recipe load instead of after the model has loaded. Where the TRL help or
# __post_init__ says a range, it is that range (cited).
TRAINING_RANGES: dict[str, Range] = {
    "learning_rate": _POSITIVE,
    "weight_decay": _NON_NEGATIVE,
    "adam_beta1": _BELOW_ONE,
    "adam_beta2": _BELOW_ONE,
    "adam_epsilon": _NON_NEGATIVE,
    "max_grad_norm": _NON_NEGATIVE,  # 0: no clipping
    "num_train_epochs": _POSITIVE,
    "max_steps": Range(low=1, special=((-1, "train for num_train_epochs"),)),
    "per_device_train_batch_size": _AT_LEAST_ONE,
    "per_device_eval_batch_size": _AT_LEAST_ONE,
    "gradient_accumulation_steps": _AT_LEAST_ONE,
    "eval_accumulation_steps": _AT_LEAST_ONE,
    "warmup_steps": _NON_NEGATIVE,  # TrainingArguments.__post_init__; below 1 a ratio of the steps
    "warmup_ratio": _FRACTION,
    "logging_steps": _POSITIVE,  # below 1: a ratio of the steps
    "save_steps": _POSITIVE,
    "eval_steps": _POSITIVE,
    "seed": _NON_NEGATIVE,
    "data_seed": _NON_NEGATIVE,
    "dataloader_num_workers": _NON_NEGATIVE,
    "dataset_num_proc": _AT_LEAST_ONE,
    "label_smoothing_factor": _BELOW_ONE,
    # preference methods
    "beta": _POSITIVE,
    "label_smoothing": Range(low=0, high=0.5, high_open=True),  # DPOConfig help: [0.0, 0.5)
    "desirable_weight": _POSITIVE,
    "undesirable_weight": _POSITIVE,
    "precompute_ref_batch_size": _AT_LEAST_ONE,
    # generation (GRPO, RLOO)
    "num_generations": Range(low=2),  # GRPO/RLOOConfig.__post_init__: at least 2 per prompt
    "num_generations_eval": Range(low=2),
    "max_completion_length": _AT_LEAST_ONE,
    "max_prompt_length": _AT_LEAST_ONE,
    "generation_batch_size": _AT_LEAST_ONE,
    "steps_per_generation": _AT_LEAST_ONE,
    "num_iterations": _AT_LEAST_ONE,
    "temperature": _POSITIVE,
    "top_p": Range(low=0, high=1, low_open=True),  # GRPOConfig help: (0, 1]
    "top_k": _NON_NEGATIVE,  # 0: off
    "min_p": _FRACTION,  # GRPOConfig help: between 0.0 and 1.0
    "repetition_penalty": _POSITIVE,
    "epsilon": _NON_NEGATIVE,
}
# Per method where a key means something else: GRPO's and RLOO's beta is a KL weight and 0.0 (GRPO's
# default) means no reference model (their help texts).
METHOD_RANGES: dict[tuple[str, str], Range] = {
    ("grpo", "beta"): _NON_NEGATIVE,
    ("rloo", "beta"): _NON_NEGATIVE,
}


def value_range(method: str, name: str) -> Range | None:
    """The range `method`'s training key `name` accepts, or None when any value of its type goes."""
    return METHOD_RANGES.get((method, name)) or TRAINING_RANGES.get(name)


def check_range(method: str, name: str, value: Any) -> None:
    """CoercionError naming the accepted range when a number lies outside it (None and non-numbers pass:
    coerce checks their type)."""
    allowed = value_range(method, name)
    if allowed is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if not allowed.admits(value):
        raise CoercionError(f"{value!r} is out of range; expected a value {allowed.describe()}")


def coerce(field: TrainingField, value: Any) -> Any:
    """Check `value` against the field's kinds (and choices), converting strings from `--set` or YAML."""
    kinds = field.kinds
    if "object" in kinds:
        return value
    if value is None:
        if "null" in kinds:
            return None
        raise CoercionError(f"must not be null; expected {field.describe_type()}")
    if isinstance(value, bool):
        if "bool" in kinds:
            return value
        if field.choices is not None and ("yes" if value else "no") in field.choices:
            return "yes" if value else "no"  # YAML 1.1 reads a bare `no` as false
    elif isinstance(value, int):
        if "int" in kinds:
            return value
        if "float" in kinds:
            return value  # an int is a fine float; keeping it keeps `warmup_steps: 4` readable
    elif isinstance(value, float):
        if "float" in kinds:
            return value
        if "int" in kinds and value.is_integer():
            return int(value)
    elif isinstance(value, str):
        if field.choices is not None and value in field.choices:
            return value
        if field.choices is None and "str" in kinds:
            return value
        text = value.strip()
        if "bool" in kinds and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if "int" in kinds:
            try:
                return int(text)
            except ValueError:
                pass
        if "float" in kinds:
            try:
                return float(text)
            except ValueError:
                pass
        if "null" in kinds and text.lower() in ("null", "none", "~"):
            return None
        if field.choices is not None:
            import difflib

            near = difflib.get_close_matches(value, field.choices, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise CoercionError(f"{value!r} is not one of {', '.join(field.choices)}{hint}")
    elif isinstance(value, dict):
        if "dict" in kinds:
            return value
    elif isinstance(value, list) and "list" in kinds:
        allowed = field.item_choices
        for item in value:
            if allowed is not None and str(item) not in allowed:
                import difflib

                near = difflib.get_close_matches(str(item), allowed, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                raise CoercionError(f"{item!r} is not one of {', '.join(allowed)}{hint}")
        return value
    if "list" in kinds and not isinstance(value, (dict, list)):
        return coerce(field, [value])  # `loss_type: ipo` means the one-element list TRL would make of it
    raise CoercionError(f"got {type(value).__name__} {value!r}; expected {field.describe_type()}")
