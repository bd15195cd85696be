"""The runner: trains one run directory's recipe and records everything in it.

Started as `python -m tui_ft.engine.runner RUN_DIR [--resume]` (detached or not, or under
`accelerate launch`), or called in-process with `execute()`. Exit status: 0 completed or stopped,
1 the training failed, 2 bad input (recipe or data).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from tui_ft.engine.allocator import keep_freed_memory
from tui_ft.errors import UserError, WorkFailed
from tui_ft.library_noise import quiet_library_noise
from tui_ft.recipe import validate_recipe
from tui_ft.runs.launcher import accelerate_config
from tui_ft.runs.prepare import read_run_recipe
from tui_ft.runs.rundir import EventWriter, RunDir, Status
from tui_ft.workspace import Workspace


def _rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def build_trainer(run: RunDir, ws: Workspace, status: Status, events: EventWriter | None, stop) -> Any:
    """Load data, tokenizer and model for the run's recipe and return its TRL trainer."""
    from transformers import set_seed

    from tui_ft.data.training import load_for_training
    from tui_ft.engine.callbacks import RunRecorder
    from tui_ft.engine.hardware import detect_hardware, precision_args, weights_dtype
    from tui_ft.engine.methods import TrainInputs, get_method
    from tui_ft.engine.models import apply_adapter, count_parameters, load_model, load_tokenizer
    from tui_ft.modelref import resolve_model
    from tui_ft.training_fields import training_fields

    loaded = validate_recipe(read_run_recipe(run), source=run.recipe_file, cache_dir=ws.cache)
    recipe = loaded.recipe
    method = get_method(recipe.method)
    training = dict(recipe.training)
    seed = int(training.get("seed", 42))
    hw = detect_hardware()
    status.device = hw.device if hw.device != "cuda" else f"cuda x{hw.device_count} ({hw.name})"

    def note(message: str, **fields: Any) -> None:
        print(f"tui-ft: {message}", flush=True)
        if events is not None:
            events.write("message", step=status.step, text=message, **fields)

    data_cache = run.path / "data"  # memory-mapped copies, as load_dataset makes (see load_for_training)
    if recipe.data.mixture:
        from tui_ft.data.mixture import load_mixture

        mixed = load_mixture(
            recipe.data.mixture,
            method=recipe.method,
            ranking_mode=recipe.data.ranking_pairs,
            temperature=recipe.data.temperature,
            cache=data_cache,
            seed=seed,
            note=note,
        )
        train_ds, eval_ds, train_format, labels = mixed.train, mixed.evals, mixed.format, None
    else:
        train = load_for_training(
            recipe.data.train or "",
            method=recipe.method,
            ranking_mode=recipe.data.ranking_pairs,
            cache_dir=data_cache / "train",
        )
        note(f"data: {train.rows} rows of {train.format.value} from {train.source}")
        if train.labels is not None:
            note(f"classes: {', '.join(train.labels)}")
        train_ds, eval_ds, train_format, labels = train.dataset, None, train.format, train.labels
        if recipe.data.eval:
            evald = load_for_training(
                recipe.data.eval,
                method=recipe.method,
                ranking_mode=recipe.data.ranking_pairs,
                cache_dir=data_cache / "eval",
                labels=train.labels,  # classify: the training data's classes; an unseen label is bad input
            )
            eval_ds = evald.dataset
        elif recipe.data.eval_split > 0:
            split = train_ds.train_test_split(test_size=recipe.data.eval_split, seed=seed)
            train_ds, eval_ds = split["train"], split["test"]
    if isinstance(eval_ds, dict):
        note("evaluation per task: " + ", ".join(f"{name} {len(ds)} rows" for name, ds in eval_ds.items()))
    elif eval_ds is not None:
        note(f"evaluation: {len(eval_ds)} rows")

    model_ref = resolve_model(recipe.model.name, ws, field="model.name")
    tokenizer = load_tokenizer(model_ref, recipe.model)
    activation_ckpt = bool(
        training.pop("activation_checkpointing", training.pop("gradient_checkpointing", False))
    )
    set_seed(seed)
    model = load_model(model_ref, recipe.model, hw, recipe.adapter.type, task=method.task, labels=labels)
    if method.task == "sequence_classification":
        model.config.pad_token_id = tokenizer.pad_token_id  # batches of scored sequences need padding
    model = apply_adapter(
        model,
        recipe.adapter,
        quantized=recipe.model.quantization != "none",
        activation_checkpointing=activation_ckpt,
    )
    counts = count_parameters(model)  # the model's own as the memory estimate counts them, the adapter apart
    trainable, total = counts.trainable, counts.model
    note(
        f"model: {model_ref.path} ({counts.describe()}, "
        f"{recipe.adapter.type}{', ' + recipe.model.quantization if recipe.model.quantization != 'none' else ''})",
        trainable_params=trainable,
        total_params=total,
        adapter_params=counts.adapter,
    )

    config: dict[str, Any] = {
        "output_dir": str(run.checkpoints),
        "report_to": "none",
        "disable_tqdm": True,
        # transformers drops NaN/inf losses from the logged average (a diverged run logs 0.0);
        # tui-ft logs them as they are, so the curve and the watchdog see them
        "logging_nan_inf_filter": False,
        "activation_checkpointing": activation_ckpt,
        **precision_args(hw, training),
    }
    if "max_length" in training_fields(recipe.method, cache_dir=ws.cache):
        config["max_length"] = recipe.data.max_length  # GRPO/RLOO bound completions instead
    if recipe.method == "sft":
        config["packing"] = recipe.data.packing
    if method.config_keys is not None:
        loss_keys, which = method.config_keys(recipe, train_format.value, tokenizer)
        config.update(loss_keys)
        note(f"loss on {which}")
    if eval_ds is not None and "eval_strategy" not in training:
        max_steps = training.get("max_steps", -1)
        if isinstance(max_steps, int) and max_steps > 0:
            config["eval_strategy"] = "steps"
            config["eval_steps"] = max(1, max_steps // 4)
        else:
            config["eval_strategy"] = "epoch"
    config.update(training)
    from tui_ft.engine.watchdog import LossWatchdog, WatchdogSettings

    recorder = RunRecorder(
        run, status, events, stop, LossWatchdog(WatchdogSettings.from_section(recipe.watchdog))
    )
    inputs = TrainInputs(
        recipe=recipe,
        model=model,
        tokenizer=tokenizer,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_format=train_format.value,
        config=config,
        callbacks=[recorder],
        load_reference=lambda: load_model(model_ref, recipe.model, hw, recipe.adapter.type, task=method.task),
        workspace=ws,
        dtype=weights_dtype(recipe.model.dtype, hw, recipe.adapter.type),
        note=note,
    )
    trainer = method.build(inputs)
    if events is not None:
        args = trainer.args
        effective = {key: getattr(args, key) for key in _REPORTED_ARGS if hasattr(args, key)}
        effective["optim"] = str(getattr(args.optim, "value", args.optim))
        events.write(
            "config",
            step=status.step,
            method=recipe.method,
            adapter=recipe.adapter.type,
            quantization=recipe.model.quantization,
            device=status.device,
            trainable_params=trainable,
            total_params=total,
            adapter_params=counts.adapter,
            train_rows=len(train_ds),
            eval_rows=sum(map(len, eval_ds.values())) if isinstance(eval_ds, dict) else len(eval_ds or ()),
            **effective,
        )
    return trainer, tokenizer, model_ref


# Trainer settings recorded in the run's `config` event (what actually ran, defaults included).
_REPORTED_ARGS = (
    "learning_rate",
    "lr_scheduler_type",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_steps",
    "num_train_epochs",
    "bf16",
    "fp16",
    "activation_checkpointing",
    "packing",
    "max_length",
    "seed",
    "eval_strategy",
    "save_steps",
    "logging_steps",
    "beta",  # preference and RL methods: strength of the pull towards the reference
    "loss_type",
    "num_generations",
    "max_completion_length",
    "temperature",
)


def _write_final(trainer, tokenizer, run: RunDir, status: Status, model_ref) -> None:
    trainer.save_model(str(run.final))
    if _rank_zero():
        tokenizer.save_pretrained(str(run.final))
        meta = {
            "run": run.id,
            "method": status.method,
            "adapter": status.adapter,
            "base_model": model_ref.base if model_ref.adapter else model_ref.path,
            "model_ref": model_ref.ref,
            "step": status.step,
        }
        (run.final / "tui-ft.json").write_text(json.dumps(meta, indent=1) + "\n")


def execute(run_dir: Path, *, resume: bool = False, install_signals: bool = False, stop=None) -> int:
    """Train the run in `run_dir`; returns the exit status. Never raises for a training failure."""
    from tui_ft.engine.callbacks import StopRequest

    quiet_library_noise()
    keep_freed_memory()
    run = RunDir(run_dir)
    ws = Workspace(run.path.parent.parent)
    rank0 = _rank_zero()
    status = run.read_status() or Status(id=run.id, name=run.id, method="?")
    stop = stop or StopRequest(run)
    if install_signals:
        stop.install()
    events = EventWriter(run.events_file) if rank0 else None  # rank 0 writes status and events
    if events is not None:
        status.state, status.error = "starting", None
        status.pid = int(os.environ.get("TUI_FT_SUPERVISOR_PID", os.getpid()))
        status.started = status.started or time.time()
        status.ended = None
        status.world_size = _world_size()
        run.write_status(status)
        events.write("state", step=status.step, state="starting", pid=os.getpid(), resume=resume)

    sampler = None  # GPU/system samples into events.jsonl, so the history exists without a UI

    def finish(state: str, code: int, error: dict | None = None) -> int:
        if sampler is not None:
            sampler.stop()
        if events is not None:
            status.state, status.error, status.ended = state, error, time.time()
            run.write_status(status)
            events.write("state", step=status.step, state=state, **({"error": error} if error else {}))
            events.close()
        return code

    try:
        trainer, tokenizer, model_ref = build_trainer(run, ws, status, events, stop)
        checkpoint = None
        if resume:
            from tui_ft.runs.registry import last_complete_checkpoint

            last = last_complete_checkpoint(run)
            checkpoint = str(last.path) if last else None
            if events is not None:
                events.write("resume", step=last.step if last else 0, checkpoint=checkpoint)
        if events is not None:
            from tui_ft.monitor.recorder import SystemRecorder

            interval = float(os.environ.get("TUI_FT_SYSTEM_INTERVAL", "5"))
            sampler = SystemRecorder(events.write, interval_s=interval, step_fn=lambda: status.step).start()
        trainer.train(resume_from_checkpoint=checkpoint)
        alarm = next(
            (cb.alarm for cb in trainer.callback_handler.callbacks if getattr(cb, "alarm", None)), None
        )
        if alarm is not None:
            kind = "nan" if alarm.kind == "nan" else "diverged"
            return finish("failed", 1, {"kind": kind, "message": alarm.text, "hint": DIVERGED_HINT})
        if stop.graceful.is_set():
            return finish("stopped", 0)
        if trainer.eval_dataset is not None and status.step and _last_eval_step(run) != status.step:
            trainer.evaluate()
        _write_final(trainer, tokenizer, run, status, model_ref)
        if events is not None:
            _evaluate_after_training(run, status, events, trainer, stop)
        return finish("completed", 0)
    except UserError as exc:
        print(f"tui-ft: {exc}", file=sys.stderr, flush=True)
        return finish(
            "failed", 2, {"kind": "bad_input", "message": str(exc).split("\n")[0], "hint": exc.hint}
        )
    except KeyboardInterrupt:
        return finish("stopped", 0, None)
    except BaseException as exc:  # noqa: BLE001 - translated at the boundary; traceback kept in the log
        traceback.print_exc(file=sys.stderr)
        from tui_ft.engine.errors import translate_exception

        failure: WorkFailed = translate_exception(exc)
        if failure.kind == "error" and _disk_nearly_full(run.path):
            # torch.save on a full disk reports a zip-writer position error, not ENOSPC
            failure = WorkFailed(
                f"the disk holding {run.path} is full ({failure.message})",
                kind="disk_full",
                hint="free space, or set training.save_total_limit to keep fewer checkpoints; then resume",
            )
        if failure.kind == "disk_full" and rank0:
            removed = _remove_incomplete_checkpoints(run)
            if removed:
                failure.message += (
                    f" (removed the incomplete {', '.join(removed)}; earlier checkpoints are intact)"
                )
        print(f"tui-ft: {failure}", file=sys.stderr, flush=True)
        return finish("failed", 1, {"kind": failure.kind, "message": failure.message, "hint": failure.hint})


DIVERGED_HINT = (
    "lower training.learning_rate, keep training.max_grad_norm at 1.0 or below, check the data; "
    "then `tui-ft resume RUN` from the last checkpoint before it went wrong (watchdog: in the recipe "
    "sets what stops a run)"
)


def _disk_nearly_full(path: Path, margin: int = 8 * 1024 * 1024) -> bool:
    import shutil

    try:
        return shutil.disk_usage(path).free < margin
    except OSError:
        return False


def _remove_incomplete_checkpoints(run: RunDir) -> list[str]:
    """Delete checkpoints cut short (a full disk mid-save): they cannot be resumed from, and the space
    they hold is what lets the run record why it failed."""
    import shutil

    from tui_ft.runs.registry import list_checkpoints

    removed = []
    for checkpoint in list_checkpoints(run):
        if not checkpoint.complete:
            shutil.rmtree(checkpoint.path, ignore_errors=True)
            removed.append(checkpoint.path.name)
    return removed


def _evaluate_after_training(run: RunDir, status: Status, events: EventWriter, trainer, stop) -> None:
    """The recipe's `eval:` section, after the final save: `python -m tui_ft.evaluation.after_training`
    in a process of its own (the evaluation sits above the engine), recorded as an `eval` event with the
    fields that process leaves in `eval/.event.json`. A failed evaluation leaves the run completed; the
    event's `error` says why."""
    import contextlib
    import subprocess

    import torch

    if not (read_run_recipe(run) or {}).get("eval"):
        return
    if torch.cuda.is_available():  # the evaluation loads the tuned model and its base again
        with contextlib.suppress(Exception):  # a quantized model cannot move: it then shares the GPU
            trainer.model.to("cpu")
        torch.cuda.empty_cache()
    events.write("message", step=status.step, text="evaluating the final model (the recipe's eval: section)")
    fields_file = run.path / "eval" / ".event.json"
    fields_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "tui_ft.evaluation.after_training", str(run.path), str(fields_file)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    while True:
        try:
            err = proc.communicate(timeout=1.0)[1] or ""
            break
        except subprocess.TimeoutExpired:
            if stop.requested():
                proc.terminate()
    sys.stderr.write(err)
    try:
        fields = json.loads(fields_file.read_text())
    except (OSError, ValueError):
        lines = [line for line in err.splitlines() if line.startswith("tui-ft:")]
        fields = {
            "source": "tui-ft eval",
            "error": lines[-1].removeprefix("tui-ft: ") if lines else err[-300:],
        }
    fields_file.unlink(missing_ok=True)
    events.write("eval", step=status.step, exit_status=proc.returncode, **fields)


def _last_eval_step(run: RunDir) -> int | None:
    from tui_ft.runs.rundir import read_events

    events, _ = read_events(run.events_file)
    steps = [e.get("step") for e in events if e.get("type") == "eval" and "source" not in e]
    return steps[-1] if steps else None


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accelerate_command(run: RunDir, launcher, *, resume: bool) -> list[str]:
    config = accelerate_config(launcher.config)
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config),
        "--num_processes",
        str(launcher.num_processes),
        "--main_process_port",
        str(_free_port()),
    ]
    if launcher.gpus:
        cmd += ["--gpu_ids", ",".join(str(g) for g in launcher.gpus)]
    cmd += ["-m", "tui_ft.engine.runner", str(run.path), "--worker"]
    if resume:
        cmd.append("--resume")
    return cmd


def supervise(run_dir: Path, *, resume: bool) -> int:
    """The runner's main process: wait for the run's devices (queue), then train in this process, or
    start `accelerate launch` workers and wait for them, holding the devices until the end."""
    import signal
    import subprocess

    from tui_ft.engine.callbacks import StopRequest
    from tui_ft.runs.queue import DeviceSlot, queued_before, run_devices, wait_for_slot

    run = RunDir(run_dir)
    ws = Workspace(run.path.parent.parent)
    status = run.read_status() or Status(id=run.id, name=run.id, method="?")
    stop = StopRequest(run)
    stop.install()
    try:
        loaded = validate_recipe(
            read_run_recipe(run), source=run.recipe_file, cache_dir=ws.cache, check_training=False
        )
    except UserError as exc:
        status.state, status.error = "failed", {"kind": "bad_input", "message": str(exc), "hint": exc.hint}
        run.write_status(status)
        return 2
    launcher = loaded.recipe.launcher
    if launcher.type == "slurm":  # the job's nodes are Slurm's to hand out: no device slot here
        return _supervise_nodes(run, status, launcher, resume=resume, stop=stop)
    devices = run_devices(launcher.gpus)
    status.pid, status.devices = os.getpid(), devices
    slot = DeviceSlot(ws, devices)

    def earlier_waiting() -> bool:
        return queued_before(ws, status, devices)

    def on_wait() -> None:
        status.state = "queued"
        run.write_status(status)
        with EventWriter(run.events_file) as events:
            events.write("state", step=status.step, state="queued", devices=devices)
        print(f"tui-ft: queued: waiting for {', '.join(devices)}", flush=True)

    try:
        got = wait_for_slot(slot, earlier_waiting=earlier_waiting, on_wait=on_wait, stop=stop.requested)
    except KeyboardInterrupt:
        got = False
    if not got:
        status.state, status.ended = "stopped", time.time()
        run.write_status(status)
        return 0
    run.write_status(status)
    try:
        if launcher.type == "local":
            return execute(run.path, resume=resume, install_signals=False, stop=stop)
        if launcher.hosts:
            return _supervise_nodes(run, status, launcher, resume=resume, stop=stop)
        try:
            cmd = accelerate_command(run, launcher, resume=resume)
        except UserError as exc:
            status.state, status.error = (
                "failed",
                {"kind": "bad_input", "message": exc.message, "hint": exc.hint},
            )
            run.write_status(status)
            print(f"tui-ft: {exc}", file=sys.stderr, flush=True)
            return 2
        env = dict(os.environ, TUI_FT_SUPERVISOR_PID=str(os.getpid()), PYTHONUNBUFFERED="1")
        child = subprocess.Popen(cmd, env=env, start_new_session=True)
        while True:
            try:
                code = child.wait()
                break
            except KeyboardInterrupt:  # a stop "now": the workers' group goes at once
                try:
                    os.killpg(child.pid, signal.SIGTERM)
                    child.wait(timeout=20)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    os.killpg(child.pid, signal.SIGKILL)
        final = run.read_status()
        if final is None or not final.is_final:
            final = final or status
            final.state, final.ended = ("stopped" if stop.now else "failed"), time.time()
            if not stop.now:
                from tui_ft.runs.registry import log_tail

                tail = [line for line in log_tail(run, 20) if line.strip()]
                final.error = {
                    "kind": "error",
                    "message": f"a training process exited with status {code}: {tail[-1] if tail else ''}",
                    "hint": f"see {run.log_file}",
                }
            run.write_status(final)
        return code
    finally:
        slot.release()


def _supervise_nodes(run: RunDir, status: Status, launcher, *, resume: bool, stop) -> int:
    """Several machines: one `accelerate launch` per host over SSH (launcher.hosts, runs/nodes.py) or
    per node of a Slurm job (runs/slurm.py). The accelerate config is copied into the run directory,
    which every node sees."""
    from tui_ft.runs.nodes import run_on_nodes
    from tui_ft.runs.slurm import run_as_job

    try:
        config = run.path / "accelerate.yaml"
        config.write_text(accelerate_config(launcher.config).read_text())
        if launcher.type == "slurm":
            return run_as_job(run, status, launcher, resume=resume, stop=stop, config=config)
        return run_on_nodes(run, status, launcher, resume=resume, stop=stop, config=config)
    except UserError as exc:
        status.state, status.ended = "failed", time.time()
        status.error = {"kind": "bad_input", "message": exc.message, "hint": exc.hint}
        run.write_status(status)
        print(f"tui-ft: {exc}", file=sys.stderr, flush=True)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tui_ft.engine.runner")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--worker", action="store_true", help="one of several processes under accelerate")
    args = parser.parse_args(argv)
    if args.worker:
        return execute(args.run_dir, resume=args.resume, install_signals=True)
    return supervise(args.run_dir, resume=args.resume)


if __name__ == "__main__":
    raise SystemExit(main())
