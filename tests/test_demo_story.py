"""The demo's story, as the README's walk-through tells it: `tui-ft train sft-lora` as shipped teaches the
base model to answer in the chat format and to end its turn; DPO after it (`tui-ft train dpo-lora --set
model.name=RUN`) keeps the answers fluent sentences that end at the end token.

Answers are greedy, to each fact's question as the sample chats ask it (the capital of each country, the
colour of each creature), through the chat template, stopping at the template's end token (<|im_end|>),
as `tui-ft generate` answers. Thresholds are out of the 27 facts.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import train_recipe
from tui_ft.demo import DEMO_MODEL, SAMPLE_FILES, SAMPLES_DIR

pytestmark = pytest.mark.slow

# Far more than any answer needs: an answer that uses them all was cut, it did not end.
MAX_NEW_TOKENS = 40
BASE_MOST_RIGHT = 1  # the base, which has never seen the chat format: at most one fact right
TUNED_FEWEST_RIGHT = 0.7  # after sft-lora: at least 70 % right
ENDED_FEWEST = 0.9  # after sft-lora, and after DPO on it: at least 90 % of answers end at the end token

_FACT_ANSWER = re.compile(r"The capital of [A-Z][A-Za-z ]* is [A-Z][a-z]+\.|An? [a-z][a-z-]* is [a-z]+\.")


def sample_facts() -> dict[str, str]:
    """Each fact the sample chats state (as they state it) -> the first question that asks for it."""
    facts: dict[str, str] = {}
    with (SAMPLES_DIR / SAMPLE_FILES["chat"]).open(encoding="utf-8") as f:
        for line in f:
            messages = json.loads(line)["messages"]
            for question, answer in zip(messages, messages[1:], strict=False):
                if question["role"] == "user" and _FACT_ANSWER.fullmatch(answer["content"]):
                    facts.setdefault(answer["content"], question["content"])
    return facts


def answers(ws, model: str) -> dict[str, tuple[str, bool]]:
    """fact -> (the model's greedy answer to its question, whether the answer ended at the end token)."""
    from tui_ft.inference.generate import generate, load_for_generation

    loaded = load_for_generation(model, ws, device="cpu")
    out = {}
    for fact, question in sample_facts().items():
        reply = generate(loaded, question, max_new_tokens=MAX_NEW_TOKENS)
        out[fact] = (reply.text.strip(), reply.new_tokens < MAX_NEW_TOKENS)
    return out


def right(replies: dict[str, tuple[str, bool]]) -> int:
    return sum(text == fact and ended for fact, (text, ended) in replies.items())


def ended(replies: dict[str, tuple[str, bool]]) -> int:
    return sum(done for _, done in replies.values())


@pytest.fixture(scope="module")
def sft_run(demo_ws):
    run, _ = train_recipe(demo_ws, "sft-lora")  # as shipped (a log line every step only)
    return run


@pytest.fixture(scope="module")
def dpo_run(demo_ws, sft_run):
    run, _ = train_recipe(demo_ws, "dpo-lora", f"model.name={sft_run.id}")  # as the README does it
    return run


def test_the_sample_chats_state_27_facts() -> None:
    facts = sample_facts()
    assert len(facts) == 27
    assert sum(fact.startswith("The capital of ") for fact in facts) == 14
    assert facts["The capital of Korvath is Drummond."] == "Name the capital of Korvath."


def test_the_base_model_does_not_answer_them(demo_ws) -> None:
    replies = answers(demo_ws, DEMO_MODEL)
    assert right(replies) <= BASE_MOST_RIGHT, replies


def test_sft_lora_as_shipped_answers_in_sentences_that_end(demo_ws, sft_run) -> None:
    replies = answers(demo_ws, sft_run.id)
    assert ended(replies) >= ENDED_FEWEST * len(replies), replies
    for text, _ in replies.values():
        assert text.endswith("."), replies  # a sentence of the chats' form, not a run-on


def test_sft_lora_as_shipped_learns_most_facts(demo_ws, sft_run) -> None:
    replies = answers(demo_ws, sft_run.id)
    assert right(replies) >= TUNED_FEWEST_RIGHT * len(replies), replies


def test_dpo_after_sft_keeps_answers_fluent_and_ending(demo_ws, dpo_run) -> None:
    replies = answers(demo_ws, dpo_run.id)
    assert ended(replies) >= ENDED_FEWEST * len(replies), replies
    for text, _ in replies.values():
        assert text[-1:] in (".", "?", "!") and "  " not in text and ".." not in text, replies
