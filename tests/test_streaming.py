"""Streaming a reply in pieces (`inference.generate.stream_messages`, `piece_streamer`): the pieces
join to exactly what `tokenizer.decode` makes of the generated ids, characters of several bytes split
across tokens included, through the incremental decoder (`tokenizers.decoders.DecodeStream`) and
through `transformers.TextStreamer` (the path of tokenizers the incremental decoder cannot stand for)."""

from __future__ import annotations

import random

import pytest

from tui_ft.inference.generate import (
    encode_messages,
    incremental_decoding,
    load_for_generation,
    piece_streamer,
    stream_messages,
)

MESSAGES = [{"role": "user", "content": "What is the capital of Korvath?"}]
TEXTS = [
    "naïve café — 東京 🙂 done\nnext line, ünïcödé",
    "x" * 60 + " 日本語のテキスト and more",
    "Ελληνικά κείμενα\n\nπολλές γραμμές ",
]


@pytest.fixture(scope="module")
def loaded(demo_ws):
    return load_for_generation("demo-tiny", demo_ws)


def stream_ids(tokenizer, ids: list[int], *, incremental: bool) -> list[str]:
    """The pieces a streamer hands out for `ids`, fed one token a step after a prompt, as
    `model.generate` feeds it."""
    import torch

    pieces: list[str] = []
    streamer = piece_streamer(tokenizer, pieces.append, incremental=incremental)
    streamer.put(torch.tensor([[1, 2, 3]]))  # the prompt: skipped
    for token in ids:
        streamer.put(torch.tensor([token]))
    streamer.end()
    assert streamer.new_tokens == len(ids)
    return pieces


def test_the_demo_tokenizer_is_decoded_incrementally(loaded):
    assert incremental_decoding(loaded.tokenizer)


@pytest.mark.parametrize("incremental", [True, False], ids=["DecodeStream", "TextStreamer"])
def test_pieces_join_to_the_decode_with_characters_split_across_tokens(loaded, incremental):
    tok = loaded.tokenizer
    cases = [tok(text)["input_ids"] for text in TEXTS]
    # the demo's byte-level vocabulary splits these characters into several tokens
    assert any(len(ids) > len(text.encode()) / 2 for ids, text in zip(cases, TEXTS, strict=True))
    cafe = tok("café")["input_ids"]
    cases.append(cafe[:-1])  # a reply cut inside a character
    cases.append([*cases[0][:5], tok.eos_token_id, *cases[0][5:]])  # a special token: left out
    rng = random.Random(7)
    cases += [[rng.randrange(len(tok)) for _ in range(rng.randrange(1, 80))] for _ in range(100)]
    for ids in cases:
        pieces = stream_ids(tok, ids, incremental=incremental)
        assert "".join(pieces) == tok.decode(ids, skip_special_tokens=True), ids
        assert all(pieces), "an empty piece was handed out"
    whole = stream_ids(tok, cases[0], incremental=incremental)
    assert whole[:3] == ["naïve ", "café ", "— "], "pieces are whole words"


def test_both_paths_hand_out_the_same_pieces(loaded):
    tok = loaded.tokenizer
    for text in TEXTS:
        ids = tok(text)["input_ids"]
        assert stream_ids(tok, ids, incremental=True) == stream_ids(tok, ids, incremental=False)


@pytest.mark.parametrize("temperature", [0.0, 3.0], ids=["greedy", "sampled"])
def test_streamed_reply_is_the_decode_of_the_generated_ids(loaded, temperature):
    """The reply streamed in pieces against `model.generate` itself with the same settings and seed,
    decoded at once. Sampled this hot, the demo model writes bytes of characters outside ASCII."""
    import torch

    tok = loaded.tokenizer
    pieces: list[str] = []
    result = stream_messages(
        loaded, MESSAGES, on_piece=pieces.append, max_new_tokens=160, temperature=temperature, top_k=0, seed=5
    )
    ids, mask = encode_messages(tok, MESSAGES)
    torch.manual_seed(5)
    sampling = {"do_sample": True, "temperature": temperature, "top_k": None} if temperature else {}
    with torch.no_grad():
        out = loaded.model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=160,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            **({"do_sample": False} | sampling),
        )
    new = out[0, ids.shape[-1] :].tolist()
    expected = tok.decode(new, skip_special_tokens=True)
    assert result.text == "".join(pieces) == expected
    assert result.new_tokens == len(new) and result.prompt_tokens == ids.shape[-1]
    assert len(pieces) > 1 and not result.stopped and result.first_token_s is not None
    if temperature:
        assert any(ord(c) > 127 for c in expected), "the sampled reply stayed in ASCII"
    else:
        assert all(p[-1].isspace() for p in pieces[:-1]), "greedy pieces are whole words"


def test_stop_ends_the_reply_after_the_token_it_was_asked_at(loaded):
    asked = [0]

    def stop() -> bool:
        asked[0] += 1
        return asked[0] >= 12

    pieces: list[str] = []
    result = stream_messages(loaded, MESSAGES, on_piece=pieces.append, stop=stop, max_new_tokens=400)
    assert result.stopped and result.new_tokens == 12 and asked[0] == 12
    full = stream_messages(loaded, MESSAGES, on_piece=lambda text: None, max_new_tokens=12)
    assert result.text == "".join(pieces) == full.text and not full.stopped
