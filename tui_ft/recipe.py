"""The one schema of a training recipe: YAML in, `--set key=value` overrides, errors naming the field.

A recipe has sections `method`, `model`, `adapter`, `data` and `training`. `training` holds the method's
TRL/transformers configuration keys under their own names (`learning_rate`, `max_steps`, ...), checked
against that configuration class, so TRL's documentation applies to them unchanged.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tui_ft.errors import RecipeError

METHODS = ("sft", "dpo", "orpo", "kto", "reward", "grpo", "rloo", "classify")
Method = Literal["sft", "dpo", "orpo", "kto", "reward", "grpo", "rloo", "classify"]

# Keys of the TRL config that tui-ft sets itself, with where the user says the same thing instead.
MANAGED_TRAINING_KEYS = {
    "output_dir": "tui-ft writes to the run directory (runs/<id>/checkpoints)",
    "max_length": "set data.max_length",
    "max_seq_length": "set data.max_length",
    "packing": "set data.packing",
    "assistant_only_loss": "set data.loss: assistant_only",
    "completion_only_loss": "set data.loss: completion_only",
    "dataset_text_field": "tui-ft normalises every dataset format itself",
    "use_cpu": "tui-ft chooses the device from the hardware",
    "no_cuda": "tui-ft chooses the device from the hardware",
    "resume_from_checkpoint": "use `tui-ft resume RUN`",
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSpec(_Section):
    """Which model to start from and how to load it."""

    name: str = Field(description="workspace model, local directory, run id, RUN:checkpoint-N, or hub id")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights' dtype; auto: bfloat16 on GPUs that support it, else float32"
    )
    quantization: Literal["none", "4bit", "8bit"] = Field(
        "none", description="load the base quantized with bitsandbytes (4bit: NF4 + double quantization)"
    )
    attn_implementation: Literal["auto", "eager", "sdpa", "flash_attention_2", "flash_attention_3"] = "auto"
    trust_remote_code: bool = Field(False, description="run Python code shipped with the model (off: safer)")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit)")
    chat_template: str | None = Field(
        None, description="a Jinja chat template file for tokenizers that have none"
    )


class AdapterSpec(_Section):
    """What trains: the whole model, its last blocks, or an adapter."""

    type: Literal["full", "freeze", "lora", "dora", "prompt_tuning"] = Field(
        "lora", description="full | freeze (last blocks + head) | lora | dora | prompt_tuning"
    )
    r: int = Field(16, gt=0, description="LoRA rank")
    alpha: int = Field(32, gt=0, description="LoRA alpha (scaling = alpha / r)")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="LoRA dropout")
    target_modules: str | list[str] = Field(
        "all-linear", description="modules LoRA wraps: all-linear, or names like [q_proj, v_proj]"
    )
    trainable_layers: int = Field(
        2,
        ge=0,
        description="freeze: how many of the last blocks train (classify with 0: the head only, "
        "the backbone a fixed feature extractor)",
    )
    num_virtual_tokens: int = Field(16, gt=0, description="prompt tuning: length of the learned prompt")
    prompt_init_text: str | None = Field(
        None, description="prompt tuning: initialise the learned prompt from this text (else random)"
    )


class MixtureSpec(_Section):
    """One task of a multi-task mixture: its data, its weight in the mix, its own evaluation data."""

    name: str = Field(description="the task's name: its eval loss is logged as eval_NAME_loss")
    train: str = Field(description="the task's training data (any format the method takes)")
    weight: float = Field(1.0, gt=0, description="its share of the mix (relative to the other tasks)")
    eval: str | None = Field(None, description="the task's own evaluation file")
    eval_split: float = Field(0.0, ge=0.0, lt=1.0, description="or a fraction of its train held out")

    @field_validator("name")
    @classmethod
    def _task_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,39}", value):
            raise ValueError("a task name is a letter, then letters, digits, '-' or '_' (up to 40)")
        return value


class DataSpec(_Section):
    """Training and evaluation data."""

    train: str | None = Field(
        None, description="a file (.jsonl .json .csv .parquet), a saved dataset folder, or a hub id"
    )
    mixture: list[MixtureSpec] = Field(
        default_factory=list,
        description="several datasets, each a task with a weight and its own eval data (instead of train)",
    )
    temperature: float = Field(
        1.0, gt=0, description="mixture sampling: a task's share is proportional to (weight x rows)^(1/T)"
    )
    eval: str | None = Field(None, description="a separate evaluation file")
    eval_split: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of train held out for evaluation")
    format: str = Field(
        "auto", description="auto, or a format name (tui-ft data check shows the detected one)"
    )
    max_length: int | None = Field(1024, gt=0, description="tokens per example; longer ones are truncated")
    packing: bool = Field(
        True,
        description="SFT: pack examples side by side, padding-free, where the model keeps them apart "
        "(checked at start); false: padded batches",
    )
    loss: Literal["auto", "assistant_only", "completion_only", "all"] = Field(
        "auto",
        description="which tokens train; auto: assistant turns for chats, completions for prompt/completion",
    )
    ranking_pairs: Literal["all", "adjacent"] = Field(
        "all", description="ranked responses become preference pairs: every pair, or neighbours only"
    )


class RewardsSpec(_Section):
    """Where GRPO and RLOO get their rewards: trained reward models and/or Python functions."""

    models: list[str] = Field(
        default_factory=list,
        description="reward models: a reward run (id or recipe name), a directory or a hub id "
        "of a sequence-classification model",
    )
    functions: list[str] = Field(
        default_factory=list,
        description="Python reward functions as FILE.py:NAME (next to the recipe) or package.module:NAME",
    )


class WatchdogSpec(_Section):
    """Stop or warn when the loss becomes NaN/infinite or explodes (checked at every logged step)."""

    metric: str = Field("loss", description="the logged metric to watch")
    on_nan: Literal["stop", "warn", "off"] = Field("stop", description="when the metric is NaN or infinite")
    on_explode: Literal["stop", "warn", "off"] = Field(
        "warn", description="when it exceeds explode_factor x its running median"
    )
    explode_factor: float = Field(
        10.0, gt=1, description="how many times the running median counts as exploded"
    )
    window: int = Field(20, ge=3, description="logged values in the running median")
    warmup: int = Field(10, ge=0, description="logged values before explosions are checked")
    patience: int = Field(1, ge=1, description="consecutive exploded values before acting")
    min_scale: float = Field(0.1, gt=0, description="scale floor for losses near zero (GRPO, RLOO)")


class LauncherSpec(_Section):
    """How the runner starts: one process, several under `accelerate launch` on this machine or on
    several machines over SSH (`hosts`), or a Slurm job (docs/multinode.md)."""

    type: Literal["local", "accelerate", "slurm"] = Field(
        "local",
        description="local: one process; accelerate: several (DDP, DeepSpeed, FSDP), on this machine or "
        "on `hosts`; slurm: an sbatch job over `nodes` machines",
    )
    num_processes: int = Field(
        1, ge=1, description="accelerate: processes to start per machine, usually one per GPU"
    )
    config: str = Field(
        "ddp",
        description="accelerate: ddp, deepspeed-zero2, deepspeed-zero3, fsdp (shipped), or a config file",
    )
    gpus: list[int] | None = Field(None, description="GPU indices to use; default: every visible GPU")
    hosts: list[str] | str | None = Field(
        None,
        description="accelerate on several machines over SSH: a list of host[:slots] (slots: processes "
        "there, default num_processes), or a hostfile in DeepSpeed's format (`host slots=N` a line)",
    )
    main_port: int = Field(29500, ge=1, le=65535, description="several machines: the rendezvous port")
    main_address: str | None = Field(
        None,
        description="several machines: the address the others reach the first host at; default: its "
        "HostName from the SSH configuration",
    )
    ssh_config: str | None = Field(
        None, description="several machines: an SSH config file (ssh -F); default: your own"
    )
    python: str | None = Field(
        None, description="several machines: the Python with tui-ft on the hosts; default: this one's path"
    )
    nodes: int = Field(1, ge=1, description="slurm: machines to ask for")
    gpus_per_node: int | None = Field(
        None, ge=0, description="slurm: GPUs to ask for on each machine; default num_processes (0: none)"
    )
    time: str | None = Field(None, description="slurm: the job's time limit (sbatch --time, e.g. 04:00:00)")
    partition: str | None = Field(None, description="slurm: the partition (sbatch --partition)")
    account: str | None = Field(None, description="slurm: the account to charge (sbatch --account)")

    def world(self) -> tuple[int, int]:
        """(machines, processes in all): what the memory estimate divides a sharded model by. Hosts
        from a hostfile count as one machine each when the file cannot be read here."""
        if self.type == "slurm":
            return self.nodes, self.nodes * self.num_processes
        if self.type != "accelerate":
            return 1, 1
        if not self.hosts:
            return 1, self.num_processes
        if isinstance(self.hosts, str):
            try:
                lines = [
                    ln.split("#", 1)[0].split()
                    for ln in Path(self.hosts).expanduser().read_text().splitlines()
                ]
            except OSError:
                return 1, self.num_processes
            slots = [
                next(
                    (int(w[6:]) for w in words[1:] if w.startswith("slots=") and w[6:].isdigit()),
                    self.num_processes,
                )
                for words in lines
                if words
            ]
        else:
            slots = [
                int(h.rsplit(":", 1)[1]) if ":" in h and h.rsplit(":", 1)[1].isdigit() else self.num_processes
                for h in self.hosts
            ]
        return len(slots), sum(slots)

    @model_validator(mode="after")
    def _hosts_need_accelerate(self) -> LauncherSpec:
        if self.hosts and self.type != "accelerate":
            raise ValueError("launcher.hosts: several machines run under type: accelerate")
        if isinstance(self.hosts, list) and not self.hosts:
            raise ValueError("launcher.hosts: an empty list; name at least one host, or leave it out")
        return self


class EvalSpec(_Section):
    """Evaluate the final model when training ends, as `tui-ft eval RUN` does (results in runs/<id>/eval/)."""

    data: str | None = Field(
        None,
        description="held-out data with reference answers (chat or prompt/completion); default: data.eval",
    )
    metrics: list[str] = Field(
        default_factory=list, description="your metric functions as FILE.py:NAME (next to the recipe)"
    )
    shots: int = Field(0, ge=0, description="few-shot baseline: the base prompted with k training examples")
    forgetting: str | None = Field(
        None, description="general text to compare base and tuned loss on; `demo`: the demo's sample"
    )
    limit: int | None = Field(None, gt=0, description="evaluate the first N rows only")
    max_new_tokens: int = Field(64, gt=0, description="longest generated reply")


class Recipe(_Section):
    """A training recipe (see recipes/ for one per method)."""

    name: str | None = Field(None, description="short name used in run ids; defaults to the file name")
    description: str = ""
    method: Method = Field(description="sft, dpo, orpo, kto, reward, grpo, rloo or classify")
    model: ModelSpec
    adapter: AdapterSpec = Field(default_factory=AdapterSpec)
    data: DataSpec
    training: dict[str, Any] = Field(
        default_factory=dict,
        description="the method's TRL config keys, under TRL's own names (classify: transformers' "
        "TrainingArguments)",
    )
    rewards: RewardsSpec | None = Field(None, description="grpo and rloo: the reward models and functions")
    watchdog: WatchdogSpec = Field(default_factory=WatchdogSpec)
    launcher: LauncherSpec = Field(default_factory=LauncherSpec)
    eval: EvalSpec | None = Field(None, description="evaluate the final model when training ends")

    @field_validator("data")
    @classmethod
    def _known_format(cls, data: DataSpec) -> DataSpec:
        from tui_ft.data.formats import Format

        names = ["auto", *(f.value for f in Format)]
        if data.format not in names:
            raise ValueError(
                f"data.format: unknown format {data.format!r}; expected one of {', '.join(names)}"
            )
        return data

    @field_validator("name")
    @classmethod
    def _name_is_slug(cls, value: str | None) -> str | None:
        if value is not None and not value.replace("-", "").replace("_", "").isalnum():
            raise ValueError("use letters, digits, '-' and '_' only")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        if self.method in ("grpo", "rloo"):
            if self.rewards is None or not (self.rewards.models or self.rewards.functions):
                raise ValueError(
                    f"rewards: {self.method} needs at least one reward: rewards.models (a reward run or "
                    "model) and/or rewards.functions (FILE.py:NAME)"
                )
        elif self.rewards is not None:
            raise ValueError(f"rewards: only grpo and rloo use rewards; method {self.method} does not")
        if self.adapter.type == "prompt_tuning" and self.method != "sft":
            raise ValueError(
                f"adapter.type: prompt tuning is offered for sft; {self.method} needs full, freeze, lora or dora"
            )
        if self.eval is not None and self.method == "reward":
            raise ValueError(
                "eval: a reward model scores text; the evaluation after training scores generations"
            )
        if self.eval is not None and not (self.eval.data or self.data.eval or self.eval.forgetting):
            raise ValueError(
                "eval.data: the evaluation after training needs held-out data: set eval.data, or data.eval"
            )
        if bool(self.data.train) == bool(self.data.mixture):
            raise ValueError(
                "data.train: give the training data as data.train (one dataset) or data.mixture (several "
                "tasks), one of the two"
            )
        if self.data.mixture:
            names = [task.name for task in self.data.mixture]
            if len(set(names)) != len(names):
                raise ValueError(f"data.mixture: task names must differ ({', '.join(names)})")
            if self.data.eval or self.data.eval_split:
                raise ValueError(
                    "data.eval: a mixture's evaluation data is per task (data.mixture[i].eval or eval_split)"
                )
            if self.method in ("grpo", "rloo", "classify"):
                raise ValueError(f"data.mixture: {self.method} trains on one dataset; use data.train")
        if self.model.quantization != "none" and self.adapter.type in ("full", "freeze"):
            raise ValueError(
                f"adapter.type: {self.adapter.type} training cannot update {self.model.quantization} "
                "quantized weights; use lora or dora (QLoRA), or model.quantization: none"
            )
        return self


# ---------------------------------------------------------------------------------------------------
# YAML with line numbers


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path in a YAML mapping document to its 1-based line."""
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = (*path, str(key_node.value))
                lines[key] = key_node.start_mark.line + 1
                walk(value_node, key)

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


def _nearest(name: str, options: list[str]) -> str | None:
    near = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return near[0] if near else None


def _section_fields(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = Recipe
    for part in loc[:-1]:
        annotation = model.model_fields.get(str(part))
        sub = annotation.annotation if annotation else None
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            model = sub
        else:
            return []
    return list(model.model_fields)


class LoadedRecipe:
    """A validated recipe with where it came from (for messages and relative paths)."""

    def __init__(
        self,
        recipe: Recipe,
        source: Path | None,
        lines: dict[tuple[str, ...], int],
        overrides: dict[tuple[str, ...], str] | None = None,
    ):
        self.recipe = recipe
        self.source = source
        self.lines = lines
        self.overrides = overrides or {}

    @property
    def base_dir(self) -> Path | None:
        return self.source.parent if self.source else None

    def error(self, path: tuple[str, ...], message: str, hint: str | None = None) -> RecipeError:
        return recipe_error(self.source, self.lines, path, message, hint, self.overrides)


def recipe_error(
    source: Path | None,
    lines: dict[tuple[str, ...], int],
    path: tuple[str, ...],
    message: str,
    hint: str | None = None,
    overrides: dict[tuple[str, ...], str] | None = None,
) -> RecipeError:
    """An error at `path`, located at its line in the file, or at the `--set` that gave the value."""
    for cut in range(len(path), 0, -1):
        if overrides and path[:cut] in overrides:
            return RecipeError(
                message, path=f"--set {overrides[path[:cut]]}", field=".".join(path), hint=hint
            )
    line = None
    for cut in range(len(path), 0, -1):
        if path[:cut] in lines:
            line = lines[path[:cut]]
            break
    return RecipeError(message, path=source or "recipe", line=line, field=".".join(path), hint=hint)


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """`training.learning_rate=1e-3` -> (("training", "learning_rate"), 0.001 or "1e-3")."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RecipeError(f"--set {text!r}: expected key=value, e.g. training.max_steps=50")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return tuple(key.split(".")), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[tuple[str, ...], str]:
    """Apply `key.path=value` overrides to `data` in place; returns which paths each one set."""
    applied: dict[tuple[str, ...], str] = {}
    for text in overrides:
        path, value = parse_override(text)
        applied[path] = text
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise RecipeError(f"--set {text!r}: {part} is not a section")
            node = child
        node[path[-1]] = value
    return applied


def validate_recipe(
    data: Any,
    *,
    source: Path | None = None,
    lines: dict[tuple[str, ...], int] | None = None,
    cache_dir: Path | None = None,
    check_training: bool = True,
    overrides: dict[tuple[str, ...], str] | None = None,
) -> LoadedRecipe:
    """Validate a recipe mapping; RecipeError (exit 2) naming the first bad field, its line and a fix."""
    lines = lines or {}
    if not isinstance(data, dict):
        raise RecipeError("a recipe is a YAML mapping with method, model, data ...", path=source or "recipe")
    if source is not None and not data.get("name"):
        data = {**data, "name": source.stem}
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            valid = _section_fields(first["loc"])
            near = _nearest(loc[-1], valid)
            hint: str | None
            if near:
                hint = f"did you mean {'.'.join((*loc[:-1], near))}?"
            else:
                hint = f"valid keys here: {', '.join(valid)}" if valid else None
            raise recipe_error(source, lines, loc, "unknown key", hint, overrides) from None
        if first["type"] == "missing":
            raise recipe_error(source, lines, loc, "missing; this key is required", None, overrides) from None
        message = first["msg"].removeprefix("Value error, ")
        named = re.match(r"^([a-z_]+(?:\.[a-z_]+)*): (.*)$", message, re.S)
        if first["type"] == "value_error" and named:
            field_path = tuple(named.group(1).split("."))
            raise recipe_error(source, lines, field_path, named.group(2), None, overrides) from None
        got = first.get("input")
        if not isinstance(got, (dict, list)):
            message = f"{message} (got {got!r})"
        raise recipe_error(source, lines, loc, message, None, overrides) from None
    loaded = LoadedRecipe(recipe, source, lines, overrides)
    if check_training:
        check_training_keys(loaded, cache_dir=cache_dir)
    return loaded


def check_training_keys(loaded: LoadedRecipe, *, cache_dir: Path | None = None) -> None:
    """Check `training:` against the method's TRL config class; converts values in place."""
    from tui_ft.training_fields import CoercionError, check_range, coerce, training_fields

    recipe = loaded.recipe
    fields = training_fields(recipe.method, cache_dir=cache_dir)
    checked: dict[str, Any] = {}
    for key, value in recipe.training.items():
        path = ("training", key)
        if key in MANAGED_TRAINING_KEYS:
            raise loaded.error(path, "tui-ft sets this itself", MANAGED_TRAINING_KEYS[key])
        if key not in fields:
            near = _nearest(key, list(fields))
            hint = (
                f"did you mean training.{near}?" if near else f"see the {recipe.method} trainer's config keys"
            )
            raise loaded.error(path, f"unknown key for method {recipe.method}", hint)
        try:
            checked[key] = coerce(fields[key], value)
            check_range(recipe.method, key, checked[key])
        except CoercionError as exc:
            raise loaded.error(path, str(exc)) from None
    recipe.training = checked


def load_recipe(
    path: str | Path,
    overrides: list[str] | None = None,
    *,
    cache_dir: Path | None = None,
    check_training: bool = True,
) -> LoadedRecipe:
    """Read a recipe file (or a shipped recipe's name), apply `--set` overrides, validate."""
    source = find_recipe(path)
    try:
        text = source.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read the recipe: {exc}", path=source) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"not valid YAML: {problem}", path=source, line=line) from None
    if data is None:
        raise RecipeError("the recipe is empty", path=source)
    applied = apply_overrides(data, overrides) if isinstance(data, dict) and overrides else {}
    return validate_recipe(
        data,
        source=source,
        lines=_key_lines(text),
        cache_dir=cache_dir,
        check_training=check_training,
        overrides=applied,
    )


def dump_recipe(recipe: Recipe) -> str:
    """The recipe as YAML, in schema order, without keys left at their defaults in adapter/model."""
    data = recipe.model_dump(mode="json", exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


# ---------------------------------------------------------------------------------------------------
# shipped recipes


def recipes_dir() -> Path:
    """The shipped recipes: inside the installed package (wheel), else the checkout's recipes/."""
    packaged = Path(__file__).parent / "recipes"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "recipes"


def shipped_recipes() -> list[Path]:
    folder = recipes_dir()
    return sorted(folder.glob("*.yaml")) if folder.is_dir() else []


def saved_recipes_dir(ws: Any = None) -> Path:
    """Where recipes saved from the Configure screen live: `<workspace>/recipes/`."""
    from tui_ft.workspace import Workspace

    return (ws or Workspace.default()).root / "recipes"


def saved_recipes(ws: Any = None) -> list[Path]:
    """Recipes saved in the workspace (found by name like shipped ones; a shipped name wins)."""
    folder = saved_recipes_dir(ws)
    return sorted(folder.glob("*.yaml")) if folder.is_dir() else []


def find_recipe(ref: str | Path) -> Path:
    """A recipe file path, the name of a shipped recipe (`sft-lora`), or of one saved in the workspace."""
    path = Path(ref).expanduser()
    if path.is_file():
        return path
    shipped = {p.stem: p for p in saved_recipes()} | {p.stem: p for p in shipped_recipes()}
    if str(ref) in shipped:
        return shipped[str(ref)]
    near = _nearest(str(ref), list(shipped))
    hint = f"did you mean {near}?" if near else "`tui-ft recipes` lists the shipped ones"
    raise RecipeError("no such recipe file or shipped recipe", path=str(ref), hint=hint)
