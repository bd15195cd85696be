"""Memory of DPO with a LoRA adapter (one base copy) against full DPO (policy + frozen reference).

In one run of this script, on a randomly initialised ~30M-parameter Llama (built locally with the demo
tokenizer, so the model's memory is not lost in the interpreter's own few hundred MB):
  A. `dpo-lora` as shipped but on that model: the reference is the base with the adapter switched off;
  B. the same recipe with `adapter.type: full`: TRL keeps a second, frozen copy as the reference.
Each variant trains a few steps in a fresh process that reports
  - model bytes: the unique tensor storage of the policy and the reference (what "one base copy"
    is about), and of the optimizer state;
  - peak RSS growth: the process's peak resident memory minus its RSS just before the model loaded.
The ratios A / B are printed; A's model bytes should be about half of B's.

    .venv/bin/python bench/dpo_memory.py [--hidden 512 --layers 8 --steps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def storage_bytes(tensors) -> int:
    seen: set[int] = set()
    total = 0
    for t in tensors:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in seen:
            seen.add(key)
            total += storage.nbytes()
    return total


def measure(ws_root: str, variant: str, steps: int) -> dict:
    """Runs in a child process: build the DPO trainer for one variant, train, report memory."""
    import gc

    import torch  # noqa: F401 - imported before the baseline so its import is not counted
    import trl  # noqa: F401

    from tui_ft.engine.callbacks import StopRequest
    from tui_ft.engine.runner import build_trainer
    from tui_ft.recipe import load_recipe
    from tui_ft.runs.prepare import create_run
    from tui_ft.runs.rundir import Status
    from tui_ft.workspace import Workspace

    ws = Workspace(Path(ws_root))
    sets = [
        "model.name=bench-dpo",
        f"training.max_steps={steps}",
        "training.eval_strategy=no",
        "data.eval_split=0",
        "training.save_strategy=no",
        "training.per_device_train_batch_size=4",
        "training.learning_rate=1e-5",
    ]
    if variant == "full":
        sets.append("adapter.type=full")
    loaded = load_recipe("dpo-lora", sets, cache_dir=ws.cache)
    run = create_run(loaded, ws)
    gc.collect()
    before = rss_bytes()
    trainer, _, _ = build_trainer(
        run, ws, Status(id=run.id, name=run.id, method="dpo"), None, StopRequest(run)
    )
    trainer.train()
    policy = list(trainer.model.parameters())
    reference = list(trainer.ref_model.parameters()) if trainer.ref_model is not None else []
    optimizer = [
        v
        for state in trainer.optimizer.state.values()
        for v in state.values()
        if hasattr(v, "untyped_storage")
    ]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "variant": variant,
        "reference_model": trainer.ref_model is not None,
        "policy_bytes": storage_bytes(policy),
        "reference_bytes": storage_bytes(reference),
        "model_bytes": storage_bytes(policy + reference),
        "optimizer_bytes": storage_bytes(optimizer),
        "trainable_params": sum(p.numel() for p in policy if p.requires_grad),
        "peak_rss_growth": peak - before,
    }


def build_model(ws, hidden: int, layers: int) -> int:
    """A random Llama with the demo tokenizer, saved as workspace model `bench-dpo`; returns its size."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(ws.models / "demo-tiny")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 8 // 3 // 64 * 64,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 64),
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    out = ws.models / "bench-dpo"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def mib(n: int) -> str:
    return f"{n / 2**20:8.1f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("WS", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1], args.steps)))
        return 0

    from tui_ft.demo import build_demo
    from tui_ft.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="tui-ft-bench-") as tmp:
        ws = Workspace(Path(tmp)).ensure()
        build_demo(ws)
        params = build_model(ws, args.hidden, args.layers)
        print(
            f"model: random Llama, {params / 1e6:.1f}M parameters (fp32), {args.steps} DPO steps per variant"
        )
        env = {**os.environ, "TUI_FT_HOME": tmp}
        results = {}
        for variant in ("lora", "full"):
            proc = subprocess.run(
                [sys.executable, __file__, "--child", tmp, variant, "--steps", str(args.steps)],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
            results[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
    a, b = results["lora"], results["full"]
    print(f"{'':24}{'A: DPO + LoRA':>16}{'B: full DPO':>16}{'A / B':>10}")
    rows = [
        ("policy weights", "policy_bytes"),
        ("reference weights", "reference_bytes"),
        ("model weights (all)", "model_bytes"),
        ("optimizer state", "optimizer_bytes"),
        ("peak RSS growth", "peak_rss_growth"),
    ]
    for label, key in rows:
        ratio = f"{a[key] / b[key]:10.3f}" if b[key] else f"{'-':>10}"
        print(f"{label:24}{mib(a[key]):>16}{mib(b[key]):>16}{ratio}")
    print(
        f"reference copy: A {'yes' if a['reference_model'] else 'none (adapter off)'}, "
        f"B {'yes' if b['reference_model'] else 'none'}; trainable: A {a['trainable_params'] / 1e6:.2f}M, "
        f"B {b['trainable_params'] / 1e6:.2f}M"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
