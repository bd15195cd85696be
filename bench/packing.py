"""Shipped SFT (packed, padding-free) against TRL's defaults (padded, unpacked) on mixed-length chat data.

    .venv/bin/python bench/packing.py [--rows 1000] [--pairs 2] [--hidden 128 --layers 2] [--check]

One invocation builds, in a temporary workspace ($TUI_FT_HOME):
  - a chat set of `--rows` rows whose token lengths are drawn log-normally (median ~70, cut to 20-500), and
    `--eval-rows` held-out rows drawn the same way;
  - a randomly initialised Llama-shaped model (`--hidden 128 --layers 2`: ~0.7M parameters, the demo's
    tokenizer and chat template), small enough for a few minutes on two busy cores.
Then, alternating the order in each pair, each side trains one epoch of the same rows (so the same
training tokens), with the same model, seed, LoRA adapter and learning-rate schedule, in a fresh process:
  - tui-ft: `tui-ft train sft-lora` (the shipped recipe; data.max_length 1024, evaluation off, one epoch);
  - TRL:    a plain script, `SFTTrainer` with `SFTConfig`'s defaults for batching (padding to the longest
            row of each batch, no packing, max_length 1024) and the recipe's other settings.
It prints non-pad tokens per second of training (the set's tokens over the trainer's `train_runtime`) for
each run, the ratio tui-ft / TRL per pair (goal >= 1.3), and each side's loss per token on the held-out rows
(assistant tokens, as both train), computed the same way for both (goal: within 2 %). `--check` exits 1
when a goal is missed. Exit status 0 otherwise (it is a benchmark), 1 when a side fails to train.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MAX_LENGTH = 1024  # TRL's default; long enough that no row is cut on either side
RECIPE = "sft-lora"
MODEL_PARAMS: list[int] = []

WORDS = (  # noqa: SIM905 - prose reads better than a list of 52 strings
    "the river runs past old mill where a baker sells warm bread to every traveller who crosses bridge "
    "over water and stone path leads north into forest of tall pines whose needles fall on moss while "
    "birds sing above green valley and farmers count sheep before evening rain comes from western hills"
).split()


def make_rows(n: int, seed: int, tokenizer: Any) -> list[dict]:
    """Chats whose token lengths are log-normal (median ~70, clipped to 20-500): a question and an answer
    that walks the word list from a random start, so the model has something to learn."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        target = min(500, max(20, int(rng.lognormvariate(math.log(70), 0.9))))
        start = rng.randrange(len(WORDS))
        question = f"Continue from {WORDS[start]}."
        words = max(1, int(target * 0.8) - 12)
        answer = " ".join(WORDS[(start + i) % len(WORDS)] for i in range(words))
        rows.append(
            {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}
        )
    return rows


def token_lengths(rows: list[dict], tokenizer: Any) -> list[int]:
    return [
        len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"])
        for r in rows
    ]


def build_model(ws: Any, hidden: int, layers: int) -> Path:
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(ws.models / "demo-tiny")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 8 // 3,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    MODEL_PARAMS.append(model.num_parameters())
    out = ws.models / "bench-llama"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def recipe_settings(ws: Any, data: Path) -> tuple[list[str], dict]:
    """The `--set` overrides of the tui-ft side and the same settings for the plain script."""
    from tui_ft.recipe import load_recipe

    overrides = [
        "model.name=bench-llama",
        f"data.train={data}",
        "data.eval_split=0",
        f"data.max_length={MAX_LENGTH}",
        'training.eval_strategy="no"',
        "training.max_steps=-1",
        "training.num_train_epochs=1",
        "training.save_steps=1000000",
        "training.logging_steps=10",
    ]
    recipe = load_recipe(RECIPE, overrides, cache_dir=ws.cache).recipe
    t = dict(recipe.training)
    spec = {
        "model": str(ws.models / "bench-llama"),
        "data": str(data),
        "adapter": {
            "r": recipe.adapter.r,
            "alpha": recipe.adapter.alpha,
            "dropout": recipe.adapter.dropout,
            "target_modules": recipe.adapter.target_modules,
        },
        "training": {
            k: t[k]
            for k in (
                "learning_rate",
                "per_device_train_batch_size",
                "gradient_accumulation_steps",
                "lr_scheduler_type",
                "warmup_steps",
                "seed",
            )
            if k in t
        },
    }
    return overrides, spec


# --- the two sides, each in a fresh process ------------------------------------------------------------


def run_tui_ft(ws: Any, overrides: list[str], env: dict[str, str]) -> dict:
    before = set(os.listdir(ws.runs))
    args = [sys.executable, "-m", "tui_ft", "train", RECIPE]
    for o in overrides:
        args += ["--set", o]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, cwd=ROOT)
    new = sorted(set(os.listdir(ws.runs)) - before)
    if proc.returncode != 0 or not new:
        raise SystemExit(
            f"tui-ft side failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    run = ws.runs / new[-1]
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines() if line.strip()]
    summary = next(e for e in events if e["type"] == "summary")
    config = next(e for e in events if e["type"] == "config")
    notes = [e["text"] for e in events if e["type"] == "message" and "pack" in e["text"]]
    steps = max(e["step"] for e in events if e["type"] == "train")
    return {
        "runtime": summary["train_runtime"],
        "adapter": str(run / "final"),
        "steps": steps,
        "packing": config.get("packing"),
        "notes": notes,
    }


def run_plain(spec: dict, out: Path, env: dict[str, str]) -> dict:
    spec_file = out / "spec.json"
    out.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(json.dumps({**spec, "output_dir": str(out)}))
    proc = subprocess.run(
        [sys.executable, __file__, "--plain", str(spec_file)],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise SystemExit(f"TRL side failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads((out / "result.json").read_text())


def plain_main(spec_file: Path) -> None:
    """TRL with its defaults for batching: padded to the longest row of each batch, no packing."""
    import datasets
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    spec = json.loads(spec_file.read_text())
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    set_seed(spec["training"].get("seed", 42))  # as the engine does before loading: the same LoRA init
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype="float32")
    a = spec["adapter"]
    model = get_peft_model(
        model,
        LoraConfig(
            r=a["r"], lora_alpha=a["alpha"], lora_dropout=a["dropout"], target_modules=a["target_modules"],
            task_type="CAUSAL_LM",
        ),
    )  # fmt: skip
    dataset = datasets.load_dataset("json", data_files=spec["data"], split="train")
    config = SFTConfig(
        output_dir=spec["output_dir"],
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        bf16=False,
        num_train_epochs=1,
        save_strategy="no",
        logging_steps=10,
        assistant_only_loss=True,  # the recipe's loss scope (data.loss: auto on chats)
        **spec["training"],
    )
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    result = trainer.train()
    trainer.save_model(spec["output_dir"] + "/final")
    Path(spec["output_dir"], "result.json").write_text(
        json.dumps(
            {
                "runtime": result.metrics["train_runtime"],
                "adapter": spec["output_dir"] + "/final",
                "steps": trainer.state.global_step,
                "packing": False,
            }
        )
    )


def eval_main(spec_file: Path) -> None:
    """Loss per assistant token on the held-out rows, for each adapter, computed one way for all."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = json.loads(spec_file.read_text())
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    rows = [json.loads(line) for line in Path(spec["heldout"]).read_text().splitlines()]
    encoded = []
    for r in rows:
        enc = tokenizer.apply_chat_template(
            r["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        encoded.append((torch.tensor([enc["input_ids"]]), torch.tensor(enc["assistant_masks"])))
    losses = {}
    for name, adapter in spec["adapters"].items():
        base = AutoModelForCausalLM.from_pretrained(spec["model"], dtype="float32")
        model = PeftModel.from_pretrained(base, adapter).eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for ids, mask in encoded:
                logits = model(input_ids=ids, use_cache=False).logits[0, :-1].float()
                targets, keep = ids[0, 1:], mask[1:].bool()
                nll = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
                total += float(nll[keep].sum())
                count += int(keep.sum())
        losses[name] = total / count
    Path(spec["out"]).write_text(json.dumps(losses))


# --- the comparison -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--eval-rows", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument(
        "--hidden", type=int, default=128, help="the model's width (default 128: ~0.7M parameters)"
    )
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--check", action="store_true", help="exit 1 if a goal is missed")
    parser.add_argument("--plain", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--eval", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain:
        plain_main(args.plain)
        return 0
    if args.eval:
        eval_main(args.eval)
        return 0

    from transformers import AutoTokenizer

    from tui_ft.data.packing import padding_share
    from tui_ft.demo import build_demo
    from tui_ft.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="tui-ft-packing-") as tmp:
        ws = Workspace(Path(tmp) / "home").ensure()
        env = {**os.environ, "TUI_FT_HOME": str(ws.root), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        build_demo(ws)
        model_dir = build_model(ws, args.hidden, args.layers)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        rows = make_rows(args.rows + args.eval_rows, 1, tokenizer)
        train, heldout = rows[: args.rows], rows[args.rows :]
        data, held = ws.data / "mixed.jsonl", ws.data / "heldout.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in train))
        held.write_text("".join(json.dumps(r) + "\n" for r in heldout))
        lengths = token_lengths(train, tokenizer)
        tokens = sum(lengths)
        overrides, spec = recipe_settings(ws, data)
        batch = spec["training"].get("per_device_train_batch_size", 8)
        q = statistics.quantiles(lengths, n=20)
        print(
            f"data: {len(train)} chats, {tokens} tokens, length min {min(lengths)} / median {statistics.median(lengths):.0f}"
            f" / p95 {q[-1]:.0f} / max {max(lengths)}; a padded batch of {batch} is "
            f"{padding_share(lengths, batch, MAX_LENGTH):.0%} padding on average"
        )
        print(
            f"model: {model_dir.name}, a random Llama of {MODEL_PARAMS[0] / 1e6:.1f}M parameters; recipe {RECIPE}"
        )
        print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}", flush=True)

        results: list[tuple[dict, dict]] = []
        adapters: dict[str, str] = {}
        for pair in range(args.pairs):
            order = ("tui-ft", "trl") if pair % 2 == 0 else ("trl", "tui-ft")
            got: dict[str, dict] = {}
            for side in order:
                started = time.time()
                if side == "tui-ft":
                    got[side] = run_tui_ft(ws, overrides, env)
                else:
                    got[side] = run_plain(spec, Path(tmp) / f"plain-{pair}", env)
                r = got[side]
                r["tokens_per_s"] = tokens / r["runtime"]
                print(
                    f"pair {pair + 1} {side:>6}: {r['steps']} steps, train {r['runtime']:.1f} s, "
                    f"{r['tokens_per_s']:.0f} non-pad tokens/s (process {time.time() - started:.0f} s, "
                    f"load {os.getloadavg()[0]:.2f})",
                    flush=True,
                )
                for line in r.get("notes", []):
                    print(f"    {line}")
                adapters[f"{side}-{pair + 1}"] = r["adapter"]
            results.append((got["tui-ft"], got["trl"]))
            print(
                f"pair {pair + 1}: tokens/s ratio tui-ft / TRL = {got['tui-ft']['tokens_per_s'] / got['trl']['tokens_per_s']:.2f}"
            )

        eval_spec = Path(tmp) / "eval.json"
        out = Path(tmp) / "losses.json"
        eval_spec.write_text(
            json.dumps({"model": str(model_dir), "heldout": str(held), "adapters": adapters, "out": str(out)})
        )
        proc = subprocess.run(
            [sys.executable, __file__, "--eval", str(eval_spec)], env=env, capture_output=True, text=True
        )
        if proc.returncode != 0:
            print(proc.stderr[-3000:])
            return 1
        losses = json.loads(out.read_text())
        ratios = [a["tokens_per_s"] / b["tokens_per_s"] for a, b in results]
        ratio = statistics.median(ratios)
        ours = statistics.mean(v for k, v in losses.items() if k.startswith("tui-ft"))
        theirs = statistics.mean(v for k, v in losses.items() if k.startswith("trl"))
        gap = abs(ours - theirs) / theirs
        print(
            "held-out loss per assistant token: "
            + ", ".join(f"{k} {v:.4f}" for k, v in sorted(losses.items()))
        )
        print(
            f"RESULT non-pad tokens/s ratio tui-ft / TRL: {ratio:.2f} (pairs: {', '.join(f'{r:.2f}' for r in ratios)}; "
            f"goal >= 1.3); held-out loss tui-ft {ours:.4f} vs TRL {theirs:.4f}: {gap:.2%} apart (goal <= 2 %); "
            f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        if args.check and (ratio < 1.3 or gap > 0.02):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
