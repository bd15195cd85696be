"""The memory estimate (`tui_ft/estimate.py`, shown in Configure and by `tui-ft estimate`) against the
measured peak of real trainings.

Builds a randomly initialised Llama-shaped model locally (`--size`: ~100M, ~200M or ~300M parameters;
the demo's tokenizer, the embeddings and head sized to Llama-2's 32,000-token vocabulary so the logits
weigh what they weigh in a real model), and chat and preference data whose every row is longer than
`data.max_length` (the estimate assumes full-length sequences: the worst case). Then trains, each in a
fresh process and through tui-ft's own runner (`tui_ft.engine.runner.execute`, as a user's run goes):
the shipped recipes sft-full, sft-freeze, sft-lora, sft-dora, sft-qlora, sft-prompt-tuning and dpo-lora
on that model, for `--steps` steps with the same batch size and max_length, no evaluation, no checkpoints.

What is measured, per training:
  CPU (default)  peak RSS growth = the process's VmHWM at the end of training minus its VmRSS just
                 before `execute()` starts, with torch, transformers, trl, peft, datasets (and
                 bitsandbytes) already imported and garbage collected: everything the run allocates
                 for its data, tokenizer, model, adapter, gradients, optimizer and activations.
                 The file-backed share (memory-mapped safetensors and Arrow files) is sampled every
                 10 ms from /proc/self/status and shown beside it.
  GPU (--device cuda)  torch.cuda.max_memory_allocated() over the run (the estimate's CUDA context
                 is left out of the comparison: the allocator does not see it); max_memory_reserved
                 shown beside it.

Prints a table: the estimate's parts, the estimate, the measured peak and estimate / measured per row
(goal: within 15 %), and exits 1 when a training failed or a row is outside the goal with --check.

    .venv/bin/python bench/memory_vs_estimate.py                      # CPU, ~100M parameters
    .venv/bin/python bench/memory_vs_estimate.py --size 200m --steps 3
    python bench/memory_vs_estimate.py --device cuda --size 300m --batch 8 --max-length 512  # a GPU
    .venv/bin/python bench/memory_vs_estimate.py --only lora,dpo-lora  # some rows
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve()
GOAL = 0.15
MODEL = "bench-mem"
VOCAB = 32000  # Llama-2's; the demo tokenizer's ids are the first 3,072 of them
SIZES = {
    # name: hidden, intermediate, layers, heads, kv heads
    "tiny": (128, 352, 2, 4, 2),  # ~8M: a smoke test of the script itself
    "100m": (768, 2048, 8, 12, 4),  # ~99M
    "200m": (1024, 2816, 12, 16, 4),  # ~201M
    "300m": (1024, 2816, 20, 16, 4),  # ~292M
}
# row name: (shipped recipe, extra overrides)
ROWS = {
    "full": ("sft-full", []),
    "freeze": ("sft-freeze", []),
    "lora": ("sft-lora", []),
    "dora": ("sft-dora", []),
    "qlora": ("sft-qlora", []),
    "prompt-tuning": ("sft-prompt-tuning", []),
    "dpo-lora": ("dpo-lora", []),
}


# ---------------------------------------------------------------------------------------------------
# the child: one training, measured


def _status_kib() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0])
    return out


class RssSampler:
    """Samples /proc/self/status every `interval` s: the highest RssAnon and RssFile seen."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.max_anon = self.max_file = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            s = _status_kib()
            self.max_anon = max(self.max_anon, s["RssAnon"] * 1024)
            self.max_file = max(self.max_file, s["RssFile"] * 1024)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def measure(ws_root: str, row: str, overrides: list[str], device: str) -> dict:
    """In a fresh process: train one row through the runner and measure its peak."""
    import datasets  # noqa: F401 - imported before the baseline so the imports are not counted
    import peft  # noqa: F401
    import torch
    import transformers  # noqa: F401
    import trl  # noqa: F401
    from trl import DPOTrainer, SFTTrainer  # noqa: F401 - trl's lazy modules

    from tui_ft.engine.runner import execute
    from tui_ft.estimate import estimate_memory
    from tui_ft.monitor.system import GpuSampler
    from tui_ft.recipe import load_recipe
    from tui_ft.runs.prepare import create_run
    from tui_ft.workspace import Workspace

    if ROWS[row][0] == "sft-qlora":
        import bitsandbytes  # noqa: F401

    ws = Workspace(Path(ws_root))
    loaded = load_recipe(ROWS[row][0], overrides, cache_dir=ws.cache)
    with GpuSampler() as sampler:
        gpu = sampler.sample()
    estimate = estimate_memory(loaded.recipe, ws, gpu=gpu)
    run = create_run(loaded, ws)
    on_gpu = device == "cuda"
    if on_gpu:
        torch.cuda.init()
        torch.cuda.reset_peak_memory_stats()
    gc.collect()
    before = _status_kib()
    started = time.perf_counter()
    with RssSampler() as rss:
        code = execute(run.path)
    seconds = time.perf_counter() - started
    after = _status_kib()
    status = run.read_status()
    result = {
        "row": row,
        "recipe": ROWS[row][0],
        "overrides": overrides,
        "state": status.state if status else "crashed",
        "error": (status.error or {}).get("message") if status else None,
        "exit": code,
        "seconds": round(seconds, 1),
        "estimate": estimate.to_json(),
        "baseline_rss": before["VmRSS"] * 1024,
        "peak_rss": after["VmHWM"] * 1024,
        "rss_growth": (after["VmHWM"] - before["VmRSS"]) * 1024,
        "anon_growth": rss.max_anon - before["RssAnon"] * 1024,
        "file_growth": rss.max_file - before["RssFile"] * 1024,
    }
    if on_gpu:
        result["cuda_allocated"] = torch.cuda.max_memory_allocated()
        result["cuda_reserved"] = torch.cuda.max_memory_reserved()
    return result


# ---------------------------------------------------------------------------------------------------
# the parent: model, data, one child per row, the table


def build_model(ws, size: str, vocab: int = VOCAB) -> int:
    """A random Llama-shaped model with the demo's tokenizer, saved as workspace model `bench-mem`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tui_ft.demo import train_tokenizer

    hidden, inter, layers, heads, kv = SIZES[size]
    tokenizer = train_tokenizer()  # the demo's (without training the demo model)
    config = LlamaConfig(
        vocab_size=max(vocab, len(tokenizer)),
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(ws.models / MODEL)
    tokenizer.save_pretrained(ws.models / MODEL)
    return sum(p.numel() for p in model.parameters())


def write_data(ws, rows: int, words: int) -> tuple[Path, Path]:
    """Chats and preference pairs whose every row is longer than max_length tokens."""
    vocab = sorted(set((HERE.parents[1] / "tui_ft" / "samples" / "corpus.txt").read_text().split()))
    rng = random.Random(0)

    def text(n: int) -> str:
        return " ".join(rng.choice(vocab) for _ in range(n))

    chat = ws.data / "bench-long-chat.jsonl"
    prefs = ws.data / "bench-long-prefs.jsonl"
    with chat.open("w") as fh:
        for _ in range(rows):
            messages = [
                {"role": "user", "content": text(8)},
                {"role": "assistant", "content": text(words)},
            ]
            fh.write(json.dumps({"messages": messages}) + "\n")
    with prefs.open("w") as fh:
        for _ in range(rows):
            row = {"prompt": text(8), "chosen": text(words), "rejected": text(words)}
            fh.write(json.dumps(row) + "\n")
    return chat, prefs


def mib(n: float) -> str:
    return f"{n / 2**20:8.1f}"


def print_table(results: list[dict], device: str) -> bool:
    parts = ("weights", "gradients", "optimizer", "activations", "overlap", "reference", "runtime")
    head = "".join(f"{p[:8]:>9}" for p in parts)
    print(f"\n{'row':<14}{head}{'estimate':>10}{'measured':>10}{'est/meas':>9}  (MiB)", flush=True)
    ok = True
    for r in results:
        if r.get("state") != "completed":
            ok = False
            print(f"{r['row']:<14} {r.get('state')}: {r.get('error')}", flush=True)
            continue
        est = r["estimate"]
        by_key = {p["key"]: p["bytes"] for p in est["parts"]}
        total = est["total_bytes"]
        if device == "cuda":
            from tui_ft.estimate import CUDA_CONTEXT

            total -= CUDA_CONTEXT
            by_key["runtime"] = by_key.get("runtime", 0) - CUDA_CONTEXT
            measured = r["cuda_allocated"]
        else:
            measured = r["rss_growth"]
        ratio = total / measured if measured > 0 else float("nan")
        r["ratio"] = ratio
        mark = "" if abs(ratio - 1) <= GOAL else "  outside"
        cols = "".join(f"{mib(by_key.get(p, 0)):>9}" for p in parts)
        print(f"{r['row']:<14}{cols}{mib(total):>10}{mib(measured):>10}{ratio:9.3f}{mark}", flush=True)
    print(flush=True)
    for r in results:
        if device == "cuda" and "cuda_reserved" in r:
            extra = f"reserved {mib(r['cuda_reserved']).strip()} MiB"
        else:
            extra = (
                f"anon {mib(r.get('anon_growth', 0)).strip()} MiB, "
                f"file-backed {mib(r.get('file_growth', 0)).strip()} MiB, "
                f"baseline RSS {mib(r.get('baseline_rss', 0)).strip()} MiB"
            )
        print(f"{r['row']:<14}{r.get('seconds', 0):6.1f} s  {extra}", flush=True)
    return ok


def reestimate(results_file: Path, ws_root: Path | None, device: str) -> int:
    """The table of an earlier run's measurements against the estimate as the code gives it now."""
    from tui_ft.estimate import estimate_memory
    from tui_ft.monitor.system import GpuSampler
    from tui_ft.recipe import load_recipe
    from tui_ft.workspace import Workspace

    if ws_root is None:
        print("memory_vs_estimate: --from-json needs --keep WORKSPACE (the run's model)", file=sys.stderr)
        return 2
    ws = Workspace(ws_root.resolve())
    os.environ["TUI_FT_HOME"] = str(ws.root)
    with GpuSampler() as sampler:
        gpu = sampler.sample()
    results = json.loads(results_file.read_text())
    for r in results:
        if r.get("state") == "completed":
            loaded = load_recipe(r["recipe"], r["overrides"], cache_dir=ws.cache)
            r["estimate"] = estimate_memory(loaded.recipe, ws, gpu=gpu).to_json()
    ok = print_table(results, device)
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--size", choices=sorted(SIZES), default="100m")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2, help="per_device_train_batch_size")
    parser.add_argument("--max-length", type=int, default=256, help="data.max_length")
    parser.add_argument(
        "--vocab", type=int, default=VOCAB, help="the model's vocabulary (embeddings, logits)"
    )
    parser.add_argument(
        "--glibc-heap",
        action="store_true",
        help="CPU: leave glibc's malloc as it is (its heap keeps freed temporaries: RSS above live memory)",
    )
    parser.add_argument("--only", default="", help=f"comma-separated rows of: {', '.join(ROWS)}")
    parser.add_argument("--check", action="store_true", help="exit 1 when a row is outside the goal")
    parser.add_argument("--keep", type=Path, default=None, help="use (and keep) this workspace folder")
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="re-estimate the measured rows of an earlier --json (with its --keep workspace), no training",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--child", nargs=4, metavar=("WS", "ROW", "OVERRIDES", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        ws_root, row, overrides, out = args.child
        Path(out).write_text(json.dumps(measure(ws_root, row, json.loads(overrides), args.device)))
        return 0

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("memory_vs_estimate: --device cuda but torch sees no CUDA GPU", file=sys.stderr)
            return 2
    if args.from_json:
        return reestimate(args.from_json, args.keep, args.device)
    rows = [r.strip() for r in args.only.split(",") if r.strip()] or list(ROWS)
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        print(
            f"memory_vs_estimate: unknown row(s) {', '.join(unknown)}; rows: {', '.join(ROWS)}",
            file=sys.stderr,
        )
        return 2

    from tui_ft.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="tui-ft-memory-") as tmp:
        if args.keep:
            tmp = str(args.keep.resolve())
        ws = Workspace(Path(tmp)).ensure()
        params = build_model(ws, args.size, args.vocab)
        chat, prefs = write_data(ws, rows=max(64, args.batch * args.steps * 4), words=args.max_length * 2)
        print(
            f"model: random Llama ({args.size}: {params / 1e6:.1f}M parameters, vocab {args.vocab}); "
            f"device {args.device}; batch {args.batch} x max_length {args.max_length}, {args.steps} steps; "
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
            flush=True,
        )
        env = {**os.environ, "TUI_FT_HOME": tmp, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        if args.device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""
            if not args.glibc_heap:
                # freed tensors go back to the OS at once: the RSS high-water mark is the peak of live
                # memory, not glibc's heap keeping the forward pass's freed temporaries
                env["MALLOC_MMAP_THRESHOLD_"] = str(64 * 1024)
        results = []
        for row in rows:
            recipe, extra = ROWS[row]
            overrides = [
                f"model.name={MODEL}",
                f"data.train={prefs if recipe.startswith('dpo') else chat}",
                "data.eval_split=0",
                f"data.max_length={args.max_length}",
                f"training.max_steps={args.steps}",
                f"training.per_device_train_batch_size={args.batch}",
                "training.gradient_accumulation_steps=1",
                "training.eval_strategy=no",
                "training.save_strategy=no",
                "training.logging_steps=1",
                *extra,
            ]
            out = Path(tmp) / f"{row}.json"
            cmd = [sys.executable, str(HERE), "--device", args.device, "--child", tmp, row]
            proc = subprocess.run(
                [*cmd, json.dumps(overrides), str(out)], env=env, capture_output=True, text=True, check=False
            )
            if proc.returncode != 0 or not out.exists():
                print(f"{row}: the child failed\n{proc.stderr[-3000:]}", file=sys.stderr, flush=True)
                results.append({"row": row, "state": "crashed", "error": proc.stderr[-300:]})
                continue
            result = json.loads(out.read_text())
            results.append(result)
            print(
                f"{row:<14} {result['state']:<10} {result['seconds']:6.1f} s  "
                f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
                flush=True,
            )
        ok = print_table(results, args.device)
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    within = all(abs(r.get("ratio", 0) - 1) <= GOAL for r in results)
    if not ok or (args.check and not within):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
