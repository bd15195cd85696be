"""The GPU check: bf16 LoRA SFT and DPO with LoRA on a locally built ~1B Llama-shaped model, through
tui-ft's own engine, with the peak memory held against the estimate and the NVML samples in the run's
events; then the engine against a plain TRL script (bench/engine_vs_trl.py) on the same GPU.

    python bench/gpu_check.py [--steps 30] [--out DIR]           on a machine with a CUDA GPU
    python bench/gpu_check.py --allow-cpu --size tiny --steps 2  the same code on a CPU (the suite runs it)

Meant for a GPU machine without network access: torch, transformers, peft and accelerate present, the
small wheels tui-ft needs beside them carried in (trl, datasets and their small dependencies; see
bench/README.md). Nothing is downloaded: the model is random weights in the shape of a ~1.1B Llama
(TinyLlama's: 2048 hidden, 22 layers, 32 heads, 4 KV heads) with the demo's tokenizer, built in the
temporary workspace; the data are the demo's sample chats and preference pairs.

Prints one line per training (peak memory, estimate, ratio, tokens/s, NVML samples) and a verdict;
exit 0 when every training completed and every estimate is within 15 % of its peak, 1 otherwise, 2 when
there is no GPU (and --allow-cpu is not given). About 5-8 minutes on an H100/H200.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
GOAL = 0.15  # estimate within 15 % of the measured peak
SHAPES = {
    # TinyLlama-1.1B's shape (vocabulary: the demo tokenizer's)
    "1b": {
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "num_hidden_layers": 22,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
    },
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    },
}


def build_model(ws, size: str, dtype) -> str:
    """A random Llama-shaped model with the demo's tokenizer, saved as a workspace model."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    name = f"llama-{size}"
    target = ws.models / name
    tokenizer = AutoTokenizer.from_pretrained(ws.models / "demo-tiny")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        **SHAPES[size],
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(dtype)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    params = sum(p.numel() for p in model.parameters())
    del model
    print(f"model {name}: {params / 1e9:.2f}B parameters, {dtype}", flush=True)
    return name


def train_one(ws, recipe: str, overrides: list[str], on_gpu: bool) -> dict:
    """Train `recipe` through the engine in this process; peak memory, estimate, throughput, samples."""
    import torch

    from tui_ft.engine.runner import execute
    from tui_ft.estimate import estimate_memory
    from tui_ft.recipe import load_recipe
    from tui_ft.runs.prepare import create_run
    from tui_ft.runs.rundir import read_events

    loaded = load_recipe(recipe, overrides, cache_dir=ws.cache)
    estimate = estimate_memory(loaded.recipe, ws)
    run = create_run(loaded, ws)
    if on_gpu:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        import psutil

        base = psutil.Process().memory_info().rss
    started = time.perf_counter()
    code = execute(run.path)
    seconds = time.perf_counter() - started
    if on_gpu:
        peak = torch.cuda.max_memory_allocated() - base
    else:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    status = run.read_status()
    events, _ = read_events(run.events_file)
    train = [e for e in events if e.get("type") == "train" and "num_tokens" in e]
    tokens_s = None
    if len(train) >= 2 and train[-1]["t"] > train[0]["t"]:
        tokens_s = (train[-1]["num_tokens"] - train[0]["num_tokens"]) / (train[-1]["t"] - train[0]["t"])
    samples = [e for e in events if e.get("type") == "system"]
    gpu_samples = [e for e in samples if e.get("gpus")]
    return {
        "recipe": recipe,
        "run": run.id,
        "state": status.state if status else "crashed",
        "error": (status.error or {}).get("message") if status else None,
        "exit": code,
        "seconds": round(seconds, 1),
        "peak_bytes": int(peak),
        "estimate_bytes": int(estimate.total_bytes),
        "estimate_over_peak": round(estimate.total_bytes / peak, 3) if peak > 0 else None,
        "tokens_per_s": round(tokens_s, 1) if tokens_s else None,
        "system_samples": len(samples),
        "gpu_samples": len(gpu_samples),
        "first_gpu_sample": gpu_samples[0] if gpu_samples else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", choices=sorted(SHAPES), default="1b")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    parser.add_argument("--allow-cpu", action="store_true", help="run on the CPU when there is no GPU")
    parser.add_argument("--skip-trl", action="store_true", help="skip the engine-vs-TRL comparison")
    args = parser.parse_args()

    import torch

    on_gpu = torch.cuda.is_available()
    if not on_gpu and not args.allow_cpu:
        reason = "torch was built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
        print(
            f"gpu_check: no CUDA GPU ({reason}); this check needs one "
            "(--allow-cpu --size tiny runs the same code on the CPU)",
            file=sys.stderr,
        )
        return 2
    bf16 = on_gpu and torch.cuda.is_bf16_supported()
    dtype = torch.bfloat16 if bf16 else torch.float32
    print(
        f"device: {torch.cuda.get_device_name(0) if on_gpu else 'CPU'}; torch {torch.__version__}; "
        f"{'bf16' if bf16 else 'fp32'}",
        flush=True,
    )

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TUI_FT_SYSTEM_INTERVAL", "1")  # NVML samples every second in the run's events
    from tui_ft.demo import build_demo
    from tui_ft.workspace import Workspace

    root = Path(tempfile.mkdtemp(prefix="tui-ft-gpu-check-"))
    os.environ["TUI_FT_HOME"] = str(root)
    ws = Workspace(root).ensure()
    build_demo(ws)
    model = build_model(ws, args.size, dtype)
    common = [
        f"model.name={model}",
        f"training.max_steps={args.steps}",
        "training.logging_steps=1",
        "training.eval_strategy=no",
        "training.save_strategy=no",
    ]
    results = [
        train_one(
            ws, "sft-lora", [*common, "data.max_length=512", "training.per_device_train_batch_size=8"], on_gpu
        ),
        train_one(
            ws, "dpo-lora", [*common, "data.max_length=512", "training.per_device_train_batch_size=4"], on_gpu
        ),
    ]
    ok = True
    for r in results:
        ratio = r["estimate_over_peak"]
        within = ratio is not None and abs(ratio - 1) <= GOAL
        # On a CPU the peak is the process's RSS high-water mark, shared by both trainings: shown, not held.
        ok &= r["state"] == "completed" and (within or not on_gpu)
        print(
            f"{r['recipe']:<9} {r['state']:<9} peak {r['peak_bytes'] / 2**30:6.2f} GiB  "
            f"estimate {r['estimate_bytes'] / 2**30:6.2f} GiB  estimate/peak {ratio}  "
            f"{'within' if within else 'OUTSIDE'} {GOAL:.0%}  tokens/s {r['tokens_per_s']}  "
            f"system samples {r['system_samples']} (GPU {r['gpu_samples']})  {r['seconds']} s",
            flush=True,
        )
        if r["error"]:
            print(f"          error: {r['error']}", flush=True)
        if on_gpu and not r["gpu_samples"]:
            ok = False
            print("          no NVML GPU samples in the run's events", flush=True)
    trl = None
    if not args.skip_trl:
        out = root / "engine_vs_trl.json"
        proc = subprocess.run(
            [
                sys.executable,
                str(HERE.with_name("engine_vs_trl.py")),
                "--steps",
                str(max(args.steps, 20)),
                "--repeats",
                "2",
                "--json",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        print(proc.stdout[-2000:], flush=True)
        trl = json.loads(out.read_text()) if out.exists() else {"error": proc.stderr[-2000:]}
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.json").write_text(
            json.dumps({"trainings": results, "engine_vs_trl": trl}, indent=1)
        )
    print("gpu_check:", "OK" if ok else "FAILED", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
