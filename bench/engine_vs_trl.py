"""tui-ft's engine against a plain TRL script: same model, data, seed and settings; same losses, same speed?

    .venv/bin/python bench/engine_vs_trl.py [--recipe sft-lora] [--steps 60] [--repeats 5] [--check]

One invocation builds the demo in a temporary workspace ($TUI_FT_HOME), turns the recipe into run
directories, and trains the same thing `--repeats` times on each side, every training in its own fresh
Python process, alternating which side goes first (A B, B A, A B, ...) so a drift in the machine's load
hits both sides alike:

  A  tui-ft's engine: `python -m tui_ft.engine.runner RUN_DIR`, the command the launcher runs; figures
     come from the run's events.jsonl.
  B  a plain TRL script as a user would write it (`plain_trl` below): AutoTokenizer and
     AutoModelForCausalLM on the same model directory, `set_seed`, peft `get_peft_model`, the same data
     read with `datasets.load_dataset("json", ...)`, `SFTTrainer` + `SFTConfig` with the same settings,
     and a small callback that records loss and num_tokens at every log, with a timestamp.

The recipe runs with evaluation off and a log at every step (`base_overrides`); both trainings use
`--threads` torch threads (default 1: on a small shared machine two threads per training mostly wait
for each other).

Throughput, computed identically for both: (num_tokens at the last log - num_tokens at the first log) /
(time of the last log - time of the first log). Model loading, data preparation and the first step are
outside that window. Each side's figure is the median over its runs; the ratio is tui-ft / plain TRL.
Two cross-checks are printed with it: the median of the per-pair ratios (each pair ran back to back, so
slow drifts in the machine's load cancel) and the same ratio in tokens per CPU-second of the training
process (sampled from /proc; other processes delay a run more than they add to its CPU time).
Losses are compared at every logged step.

Exit status 0 (it is a benchmark), unless a side fails to train (1), the recipe cannot be reproduced
by the plain script (2), or `--check` is given and the ratio is below 0.97 or a loss differs by more
than 1e-6 (1).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RATIO_GOAL = 0.97
LOSS_TOLERANCE = 1e-6
HERE = Path(__file__).resolve()


# ---------------------------------------------------------------------------------------------------
# Side B: the plain TRL script. Runs in its own process (`--worker plain SPEC OUT`). Written the way a
# user would write it; the settings a user would type in come from SPEC (taken from the same recipe).


def plain_trl(spec: dict[str, Any], out: Path) -> None:
    import torch
    from datasets import load_dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, set_seed
    from trl import SFTConfig, SFTTrainer

    class LossLog(TrainerCallback):
        """Loss and tokens seen at every log, with the time it was logged."""

        def __init__(self):
            self.rows = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs and "num_tokens" in logs:
                self.rows.append(
                    {
                        "t": time.time(),
                        "step": state.global_step,
                        "loss": float(logs["loss"]),
                        "num_tokens": float(logs["num_tokens"]),
                    }
                )

    model_dir = spec["model"]
    dataset = load_dataset("json", data_files=spec["train"], split="train")

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if spec.get("chat_template"):
        tokenizer.chat_template = spec["chat_template"]

    gpu = torch.cuda.is_available()
    bf16 = gpu and torch.cuda.is_bf16_supported()

    set_seed(spec["seed"])
    model_kwargs = {}
    if spec.get("dtype", "auto") != "auto":
        model_kwargs["dtype"] = getattr(torch, spec["dtype"])
    elif gpu:  # half-precision weights on a GPU (fp16 only under an adapter: a frozen base)
        full = spec["adapter"]["type"] in ("full", "freeze")
        model_kwargs["dtype"] = torch.bfloat16 if bf16 else torch.float32 if full else torch.float16
    if spec.get("attn_implementation", "auto") != "auto":
        model_kwargs["attn_implementation"] = spec["attn_implementation"]
    model = AutoModelForCausalLM.from_pretrained(model_dir, **model_kwargs)

    adapter = spec["adapter"]
    if adapter["type"] in ("lora", "dora"):
        lora = LoraConfig(
            r=adapter["r"],
            lora_alpha=adapter["alpha"],
            lora_dropout=adapter["dropout"],
            target_modules=adapter["target_modules"],
            use_dora=adapter["type"] == "dora",
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)

    # Which tokens train (the recipe's data.loss): assistant turns of chats when the chat template marks
    # them, completions of prompt/completion data, else everything.
    if spec["loss"] == "all":
        loss_args = {"assistant_only_loss": False, "completion_only_loss": False}
    elif "messages" in dataset.column_names and "generation" in (tokenizer.chat_template or ""):
        loss_args = {"assistant_only_loss": True}
    elif "completion" in dataset.column_names:
        loss_args = {"completion_only_loss": True}
    else:
        loss_args = {}

    training = dict(spec["training"])
    checkpointing = training.pop("activation_checkpointing", training.pop("gradient_checkpointing", False))
    if "bf16" not in training and "fp16" not in training:
        training.update(bf16=bf16, fp16=gpu and not bf16)
    config = SFTConfig(
        output_dir=spec["output_dir"],
        report_to="none",
        disable_tqdm=True,
        activation_checkpointing=checkpointing,
        max_length=spec["max_length"],
        packing=spec["packing"],
        use_cpu=not gpu,
        **loss_args,
        **training,
    )
    log = LossLog()
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[log],
    )
    trainer.train()
    out.write_text(json.dumps({"logs": log.rows}))


# ---------------------------------------------------------------------------------------------------
# The figures, computed the same way for both sides


def throughput(logs: list[dict[str, Any]]) -> float | None:
    """Tokens per second between the first and the last log (start-up and the first step excluded)."""
    if len(logs) < 2:
        return None
    first, last = logs[0], logs[-1]
    seconds = last["t"] - first["t"]
    return (last["num_tokens"] - first["num_tokens"]) / seconds if seconds > 0 else None


def engine_logs(run_dir: Path) -> list[dict[str, Any]]:
    """The train events of a finished run: time, step, loss, num_tokens."""
    rows = []
    for line in (run_dir / "events.jsonl").read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("type") == "train" and "loss" in event and "num_tokens" in event:
            rows.append(
                {
                    "t": float(event["t"]),
                    "step": event["step"],
                    "loss": float(event["loss"]),
                    "num_tokens": float(event["num_tokens"]),
                }
            )
    return rows


# ---------------------------------------------------------------------------------------------------
# Preparing the workspace, the run directories and the plain script's settings

UNSUPPORTED_ADAPTERS = ("freeze", "prompt_tuning")


def base_overrides(steps: int) -> list[str]:
    # Padded batches on both sides: this compares what the engine adds to a step, not the batching
    # (bench/packing.py measures packing against TRL's padded defaults).
    return [
        "data.packing=false",
        "data.eval=null",
        "data.eval_split=0",
        'training.eval_strategy="no"',
        f"training.max_steps={steps}",
        "training.logging_steps=1",
    ]


def plain_spec(recipe_yaml: dict[str, Any], model_dir: Path, output_dir: Path) -> dict[str, Any]:
    """The settings the plain script uses, read from the resolved recipe the engine runs."""
    model, adapter, data = recipe_yaml["model"], recipe_yaml["adapter"], recipe_yaml["data"]
    problems = []
    if recipe_yaml["method"] != "sft":
        problems.append(f"method {recipe_yaml['method']} (the plain script is SFT)")
    if model.get("quantization", "none") != "none":
        problems.append(f"model.quantization {model['quantization']}")
    if adapter["type"] in UNSUPPORTED_ADAPTERS:
        problems.append(f"adapter.type {adapter['type']} (the plain script does lora, dora and full)")
    if data.get("format", "auto") != "auto":
        problems.append("data.format (the plain script reads the file as it is)")
    first = _first_row(Path(data["train"]))
    if not (isinstance(first, dict) and ("messages" in first or "completion" in first or "text" in first)):
        problems.append(
            f"data.train {data['train']}: TRL reads messages, prompt/completion or text rows as they are"
        )
    if problems:
        raise ValueError("the plain TRL script cannot reproduce this recipe: " + "; ".join(problems))
    chat_template = model.get("chat_template")
    if chat_template and Path(chat_template).expanduser().is_file():
        chat_template = Path(chat_template).expanduser().read_text()
    return {
        "model": str(model_dir),
        "train": data["train"],
        "seed": int(recipe_yaml["training"].get("seed", 42)),
        "dtype": model.get("dtype", "auto"),
        "attn_implementation": model.get("attn_implementation", "auto"),
        "chat_template": chat_template,
        "adapter": adapter,
        "max_length": data["max_length"],
        "packing": data["packing"],
        "loss": data["loss"],
        "training": recipe_yaml["training"],
        "output_dir": str(output_dir),
    }


def _first_row(path: Path) -> Any:
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as fh:
        if path.suffix == ".json":
            rows = json.load(fh)
            return rows[0] if isinstance(rows, list) and rows else None
        for line in fh:
            if line.strip():
                return json.loads(line)
    return None


def child_env(home: Path, label: str, threads: int | None, allocator: str = "same") -> dict[str, str]:
    """A fresh environment per training: the temp workspace, offline, and a datasets cache of its own
    (so one run never reuses another's tokenized data); `threads` caps torch's CPU threads.

    `allocator` "same" gives the plain script the glibc malloc thresholds tui-ft's runner sets for itself
    (`keep_freed_memory`), through glibc's own variables, so the ratio measures what the engine adds and
    not the allocator; "default" leaves the plain script on glibc's defaults, as a user's script runs."""
    env = dict(os.environ)
    if label.startswith("plain") and allocator == "same":
        from tui_ft.engine.allocator import MMAP_THRESHOLD, TRIM_THRESHOLD

        env.update(MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD), MALLOC_TRIM_THRESHOLD_=str(TRIM_THRESHOLD))
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.update(
        TUI_FT_HOME=str(home),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_DATASETS_CACHE=str(home / "hf-datasets" / label),
        PYTHONUNBUFFERED="1",
    )
    return env


class Sampler:
    """CPU time (user + system, all threads) of a child process, read from /proc every few milliseconds
    with the wall-clock time of each reading (Linux; elsewhere it records nothing)."""

    INTERVAL = 0.01

    def __init__(self, pid: int):
        self.path = Path(f"/proc/{pid}/stat")
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.times: list[float] = []
        self.cpu: list[float] = []

    def sample(self) -> None:
        try:
            fields = self.path.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return
        # after "pid (comm)": state is field 0, utime field 11, stime field 12
        self.times.append(time.time())
        self.cpu.append((int(fields[11]) + int(fields[12])) / self.tick)

    def at(self, t: float) -> float | None:
        """CPU seconds used by time `t`, interpolated between the readings around it."""
        i = bisect.bisect_left(self.times, t)
        if i == 0 or i >= len(self.times):
            return None
        t0, t1 = self.times[i - 1], self.times[i]
        c0, c1 = self.cpu[i - 1], self.cpu[i]
        return c0 + (c1 - c0) * (t - t0) / (t1 - t0) if t1 > t0 else c1


def run_child(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, Sampler]:
    """Run one training in a fresh process, sampling its CPU time; exits 1 if it fails."""
    started = time.time()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        sampler = Sampler(proc.pid)
        while proc.poll() is None:
            sampler.sample()
            time.sleep(Sampler.INTERVAL)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        print(
            f"\nengine_vs_trl: {' '.join(cmd)} failed (exit {proc.returncode}); end of {log}:\n{tail}",
            file=sys.stderr,
        )
        raise SystemExit(1)
    return time.time() - started, sampler


def cpu_throughput(logs: list[dict[str, Any]], sampler: Sampler) -> float | None:
    """Tokens per CPU-second of the training process between the first and the last log: less swayed
    than wall time by other processes on a shared machine (they delay the run; they do not add to its
    CPU time, cache and memory contention aside)."""
    if len(logs) < 2:
        return None
    c0, c1 = sampler.at(logs[0]["t"]), sampler.at(logs[-1]["t"])
    if c0 is None or c1 is None or c1 <= c0:
        return None
    return (logs[-1]["num_tokens"] - logs[0]["num_tokens"]) / (c1 - c0)


# ---------------------------------------------------------------------------------------------------
# Comparing and printing


def compare_losses(engine_runs, plain_runs) -> tuple[float, bool, bool]:
    """The largest |engine - plain| loss over all logged steps of every pair of runs (engine run i
    against plain run i), whether both logged the same steps, and whether they saw the same tokens."""
    max_diff = 0.0
    steps_match = tokens_match = True
    for eng, pln in zip(engine_runs, plain_runs, strict=True):
        if [r["step"] for r in eng] != [r["step"] for r in pln]:
            steps_match = False
            continue
        for a, b in zip(eng, pln, strict=True):
            max_diff = max(max_diff, abs(a["loss"] - b["loss"]))
            tokens_match &= a["num_tokens"] == b["num_tokens"]
    return max_diff, steps_match, tokens_match


def spread(runs) -> float:
    """Largest difference between runs of the same side at one step (0 when the side is deterministic)."""
    worst = 0.0
    for other in runs[1:]:
        for a, b in zip(runs[0], other, strict=False):
            worst = max(worst, abs(a["loss"] - b["loss"]))
    return worst


def median(values: list[float | None]) -> float | None:
    known = [v for v in values if v]
    return statistics.median(known) if known else None


def fmt(value: float | None, width: int = 8) -> str:
    return f"{value:{width}.1f}" if value is not None else f"{'n/a':>{width}}"


def print_losses(engine_runs, plain_runs, repeats: int) -> tuple[float, bool]:
    max_diff, steps_match, tokens_match = compare_losses(engine_runs, plain_runs)
    print("\nloss at every logged step (run 1 of each side):")
    print(f"  {'step':>5}  {'tui-ft engine':>16}  {'plain TRL':>16}  {'|diff|':>10}  {'num_tokens':>10}")
    plain_by_step = {r["step"]: r for r in plain_runs[0]}
    for r in engine_runs[0]:
        p = plain_by_step.get(r["step"])
        plain_loss = f"{p['loss']:16.10f}" if p else f"{'-':>16}"
        diff = f"{abs(r['loss'] - p['loss']):10.3e}" if p else f"{'-':>10}"
        print(f"  {r['step']:>5}  {r['loss']:16.10f}  {plain_loss}  {diff}  {int(r['num_tokens']):>10}")
    if not steps_match:
        print("  the two sides logged different steps")
    if not tokens_match:
        print("  the two sides saw different numbers of tokens at some step")
    identical = steps_match and tokens_match and max_diff <= LOSS_TOLERANCE
    print(
        f"loss identical: {'yes' if identical else 'no'} (max |diff| = {max_diff:.3e} over {repeats} "
        f"pair(s) of runs; tolerance {LOSS_TOLERANCE:g})"
    )
    spread_e, spread_p = spread(engine_runs), spread(plain_runs)
    if spread_e or spread_p:
        print(f"  run-to-run spread within a side: engine {spread_e:.3e}, plain TRL {spread_p:.3e}")
    return max_diff, identical


# ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Train the same recipe with tui-ft's engine and with a plain TRL script, each in "
        "fresh processes; compare the loss at every step and the tokens/s."
    )
    parser.add_argument("--recipe", default="sft-lora", help="a shipped recipe name or a recipe file")
    parser.add_argument("--steps", type=int, default=60, help="training steps per run (default 60)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per side (default 5)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a recipe override for both sides, e.g. training.per_device_train_batch_size=4",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="torch CPU threads in both trainings (OMP_NUM_THREADS; default 1, steadier on a shared "
        "machine); 0 leaves torch's default",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit 1 if the tokens/s ratio is below {RATIO_GOAL} or a loss differs by more than "
        f"{LOSS_TOLERANCE:g}",
    )
    parser.add_argument(
        "--plain-allocator",
        choices=("same", "default"),
        default="same",
        help="same (default): the plain script runs with the malloc thresholds tui-ft's runner sets, so "
        "the ratio is the engine's own cost; default: glibc's defaults, as a user's script runs",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures to FILE")
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspace (logs, runs)")
    parser.add_argument("--worker", nargs=3, metavar=("SIDE", "SPEC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        side, spec, out = args.worker
        if side != "plain":
            parser.error(f"unknown worker {side}")
        plain_trl(json.loads(Path(spec).read_text()), Path(out))
        return 0
    if args.steps < 3 or args.repeats < 1:
        parser.error("--steps must be at least 3 and --repeats at least 1")

    home = Path(tempfile.mkdtemp(prefix="tui-ft-bench-")).resolve()
    try:
        return bench(args, home)
    finally:
        if args.keep:
            print(f"workspace kept: {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


def bench(args, home: Path) -> int:
    import yaml

    from tui_ft.demo import build_demo
    from tui_ft.errors import UserError
    from tui_ft.modelref import resolve_model
    from tui_ft.recipe import load_recipe
    from tui_ft.runs.prepare import create_run
    from tui_ft.workspace import Workspace

    ws = Workspace(home)
    print(f"workspace {home}: building the demo ...", flush=True)
    build_demo(ws)
    try:
        loaded = load_recipe(args.recipe, base_overrides(args.steps) + args.overrides, cache_dir=ws.cache)
        runs = [create_run(loaded, ws) for _ in range(args.repeats)]
    except UserError as exc:
        print(f"engine_vs_trl: {exc}", file=sys.stderr)
        return 2
    resolved = yaml.safe_load(runs[0].recipe_file.read_text())
    model_dir = Path(resolve_model(resolved["model"]["name"], ws).path)
    specs = []
    for i in range(args.repeats):
        try:
            spec = plain_spec(resolved, model_dir, home / "plain" / f"run-{i + 1}")
        except ValueError as exc:
            print(f"engine_vs_trl: {exc}", file=sys.stderr)
            return 2
        path = home / "plain" / f"spec-{i + 1}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(spec, indent=1))
        specs.append(path)

    threads = f"{args.threads} torch thread(s)" if args.threads else "torch's default threads"
    print(
        f"recipe {args.recipe} ({resolved['adapter']['type']}, {args.steps} steps, logging every step, "
        f"{threads}; plain script's malloc: {args.plain_allocator}); {args.repeats} run(s) per side, each in a fresh process, in the order A B, B A, ...",
        flush=True,
    )
    print(f"  {'':22}{'tokens/s':>10}{'tokens/CPU-s':>14}{'process':>10}")
    results: dict[str, dict[str, list]] = {
        side: {"logs": [], "rate": [], "cpu_rate": []} for side in ("engine", "plain")
    }
    for i in range(args.repeats):
        for side in ("engine", "plain") if i % 2 == 0 else ("plain", "engine"):
            env = child_env(home, f"{side}-{i + 1}", args.threads, args.plain_allocator)
            log = home / f"{side}-{i + 1}.log"
            if side == "engine":
                cmd = [sys.executable, "-m", "tui_ft.engine.runner", str(runs[i].path)]
                wall, sampler = run_child(cmd, env, log)
                logs = engine_logs(runs[i].path)
            else:
                out = home / "plain" / f"logs-{i + 1}.json"
                cmd = [sys.executable, str(HERE), "--worker", "plain", str(specs[i]), str(out)]
                wall, sampler = run_child(cmd, env, log)
                logs = json.loads(out.read_text())["logs"]
            rate, cpu_rate = throughput(logs), cpu_throughput(logs, sampler)
            results[side]["logs"].append(logs)
            results[side]["rate"].append(rate)
            results[side]["cpu_rate"].append(cpu_rate)
            label = "A tui-ft engine" if side == "engine" else "B plain TRL"
            print(f"  run {i + 1} {label:16}  {fmt(rate, 10)}{fmt(cpu_rate, 14)}{wall:9.1f}s", flush=True)

    engine, plain = results["engine"], results["plain"]
    max_diff, identical = print_losses(engine["logs"], plain["logs"], args.repeats)

    e_rate, p_rate = median(engine["rate"]), median(plain["rate"])
    e_cpu, p_cpu = median(engine["cpu_rate"]), median(plain["cpu_rate"])
    ratio = e_rate / p_rate if e_rate and p_rate else None
    cpu_ratio = e_cpu / p_cpu if e_cpu and p_cpu else None
    paired = median([a / b for a, b in zip(engine["rate"], plain["rate"], strict=True) if a and b])
    first, last = engine["logs"][0][0]["step"], engine["logs"][0][-1]["step"]
    print(f"\nthroughput between the logs of steps {first} and {last}, median of {args.repeats} run(s):")
    print(f"  {'':16}{'tokens/s':>10}{'tokens/CPU-s':>14}")
    print(f"  {'tui-ft engine':16}{fmt(e_rate, 10)}{fmt(e_cpu, 14)}")
    print(f"  {'plain TRL':16}{fmt(p_rate, 10)}{fmt(p_cpu, 14)}")
    if args.repeats > 1 and paired:
        print(f"cross-checks: median of the per-pair ratios {paired:.3f}", end="")
        print(f", tokens per CPU-second ratio {cpu_ratio:.3f}" if cpu_ratio else "")
    print(
        f"tokens/s ratio (tui-ft / plain TRL): {ratio:.3f} (goal >= {RATIO_GOAL})"
        if ratio
        else "tokens/s ratio (tui-ft / plain TRL): n/a"
    )

    if args.json:
        figures = {
            "recipe": args.recipe,
            "steps": args.steps,
            "repeats": args.repeats,
            "threads": args.threads,
            "plain_allocator": args.plain_allocator,
            "ratio": ratio,
            "paired_ratio": paired,
            "cpu_ratio": cpu_ratio,
            "engine_tokens_per_s": e_rate,
            "plain_tokens_per_s": p_rate,
            "engine_tokens_per_cpu_s": e_cpu,
            "plain_tokens_per_cpu_s": p_cpu,
            "engine_runs_tokens_per_s": engine["rate"],
            "plain_runs_tokens_per_s": plain["rate"],
            "engine_runs_tokens_per_cpu_s": engine["cpu_rate"],
            "plain_runs_tokens_per_cpu_s": plain["cpu_rate"],
            "max_loss_diff": max_diff,
            "loss_identical": identical,
            "engine_losses": [r["loss"] for r in engine["logs"][0]],
            "plain_losses": [r["loss"] for r in plain["logs"][0]],
        }
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    if args.check and (ratio is None or ratio < RATIO_GOAL or not identical):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
