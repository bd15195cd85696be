"""Eval throughput: `tui-ft eval`'s two passes against a plain transformers loop on the same rows.

In one invocation, on the demo model (built in a temporary workspace unless `$TUI_FT_HOME` has it) and
`--rows` rows of the sample chat data:
  A. tui-ft: the functions `tui-ft eval` runs, on a model loaded by `load_for_generation`: rows
     tokenized as TRL tokenizes them, the loss pass batched by length (`--batch-size` / 2 rows a
     forward), greedy generation in left-padded batches of `--batch-size`;
  B. the baseline a user would write: `AutoModelForCausalLM.from_pretrained` on the same model, one row
     at a time: `model(input_ids, labels=labels).loss` over the same input ids and labels, and
     `model.generate(..., do_sample=False)` for each prompt.
Each side runs `--repeats` times, alternating (A B, B A, ...); the figures are medians. It reports
rows/s of each pass on each side and the ratio A / B, and checks the two agree: the same token-weighted
loss (to 1e-4) and the share of identical greedy replies.

    .venv/bin/python bench/eval_throughput.py [--rows 64] [--repeats 3] [--batch-size 16] [--check]

Exit status 0 whatever the figures, unless `--check` (1 when tui-ft is slower than the loop on either
pass, or the losses disagree).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _workspace(tmp: Path):
    from tui_ft.demo import build_demo
    from tui_ft.workspace import Workspace

    ws = Workspace.default() if os.environ.get("TUI_FT_HOME") else Workspace(tmp / "home")
    build_demo(ws.ensure())
    return ws


def tui_ft_side(loaded, examples, encoded, batch_size: int, max_new_tokens: int) -> dict:
    from tui_ft.evaluation.scoring import encode_prompt, generate_batched, loss_pass

    t0 = time.perf_counter()
    loss = loss_pass(loaded, encoded, batch_size=max(1, batch_size // 2))
    t1 = time.perf_counter()
    prompts = [encode_prompt(loaded.tokenizer, e.prompt) for e in examples]
    replies = generate_batched(loaded, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    t2 = time.perf_counter()
    return {"loss": loss.loss, "loss_s": t1 - t0, "gen_s": t2 - t1, "replies": [r.text for r in replies]}


def plain_side(model, tokenizer, examples, encoded, max_new_tokens: int) -> dict:
    import torch

    total, counted = 0.0, 0
    t0 = time.perf_counter()
    with torch.no_grad():
        for ids, labels in encoded:
            out = model(
                input_ids=torch.tensor([ids], device=model.device),
                labels=torch.tensor([labels], device=model.device),
            )
            n = sum(1 for label in labels[1:] if label != -100)
            total += float(out.loss) * n
            counted += n
    t1 = time.perf_counter()
    replies = []
    with torch.no_grad():
        for e in examples:
            enc = tokenizer.apply_chat_template(
                e.prompt, add_generation_prompt=True, return_dict=True, return_tensors="pt"
            ).to(model.device)
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            replies.append(tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True))
    t2 = time.perf_counter()
    return {"loss": total / counted, "loss_s": t1 - t0, "gen_s": t2 - t1, "replies": replies}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch
    from transformers import AutoModelForCausalLM

    from tui_ft.evaluation.examples import read_eval_data
    from tui_ft.evaluation.scoring import loss_scope, tokenize_row
    from tui_ft.inference.generate import load_for_generation
    from tui_ft.library_noise import quiet_library_noise

    quiet_library_noise()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        ws = _workspace(Path(tmp))
        loaded = load_for_generation("demo-tiny", ws)
        model_dir = str(ws.models / "demo-tiny")
        plain = AutoModelForCausalLM.from_pretrained(model_dir).to(loaded.device).eval()
        data = read_eval_data("chat.jsonl", base_dir=ws.data, limit=args.rows)
        examples = [e for e in data.examples if e.reference is not None]
        scope = loss_scope("auto", data.format, loaded.tokenizer)
        encoded = [tokenize_row(loaded.tokenizer, e.row, scope, 1024) for e in data.examples]
        a_runs, b_runs = [], []
        for i in range(args.repeats):
            order = ("A", "B") if i % 2 == 0 else ("B", "A")
            for side in order:
                if side == "A":
                    a_runs.append(
                        tui_ft_side(loaded, examples, encoded, args.batch_size, args.max_new_tokens)
                    )
                else:
                    b_runs.append(plain_side(plain, loaded.tokenizer, examples, encoded, args.max_new_tokens))
    rows, gen_rows = len(encoded), len(examples)
    fig = {}
    for name, runs in (("tui-ft", a_runs), ("plain", b_runs)):
        fig[name] = {
            "loss_rows_per_s": statistics.median(rows / r["loss_s"] for r in runs),
            "gen_rows_per_s": statistics.median(gen_rows / r["gen_s"] for r in runs),
            "loss": runs[0]["loss"],
        }
    loss_ratio = fig["tui-ft"]["loss_rows_per_s"] / fig["plain"]["loss_rows_per_s"]
    gen_ratio = fig["tui-ft"]["gen_rows_per_s"] / fig["plain"]["gen_rows_per_s"]
    same_loss = abs(fig["tui-ft"]["loss"] - fig["plain"]["loss"]) <= 1e-4
    same_replies = (
        sum(a == b for a, b in zip(a_runs[0]["replies"], b_runs[0]["replies"], strict=True)) / gen_rows
    )
    print(
        f"rows: {rows} (loss pass), {gen_rows} generated, max_new_tokens {args.max_new_tokens}, "
        f"batch {args.batch_size}, {args.repeats} runs per side, torch threads {torch.get_num_threads()}"
    )
    print(f"{'side':<8} {'loss rows/s':>12} {'gen rows/s':>11} {'loss':>9}")
    for name in ("tui-ft", "plain"):
        f = fig[name]
        print(f"{name:<8} {f['loss_rows_per_s']:>12.1f} {f['gen_rows_per_s']:>11.2f} {f['loss']:>9.5f}")
    print(f"loss pass ratio (tui-ft / plain loop): {loss_ratio:.2f}")
    print(f"generation ratio (tui-ft / plain loop): {gen_ratio:.2f}")
    print(f"same loss: {'yes' if same_loss else 'NO'}; identical greedy replies: {same_replies:.0%}")
    if args.json:
        doc = {
            **fig,
            "loss_ratio": loss_ratio,
            "gen_ratio": gen_ratio,
            "same_loss": same_loss,
            "identical_replies": same_replies,
        }
        args.json.write_text(json.dumps(doc, indent=1))
    if args.check and (loss_ratio < 1 or gen_ratio < 1 or not same_loss):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
