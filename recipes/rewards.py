"""Reward functions for the GRPO and RLOO recipes on the demo data (a recipe names them as
`rewards.py:NAME`).

TRL calls each one with the prompts, the completions and every other column of the dataset as
keyword arguments, and expects one float (or None, "no opinion") per completion. Write your own the
same way: take `completions` and `**kwargs`, return a list as long as `completions`.
"""

from __future__ import annotations

import re

_RUDE = re.compile(r"whatever|go away|stop asking|ugh|obviously|i guess", re.IGNORECASE)


def _text(completion) -> str:
    # Conversational data gives a list of messages per completion; plain data gives a string.
    if isinstance(completion, list):
        return " ".join(str(m.get("content", "")) for m in completion)
    return str(completion)


def polite(completions, **kwargs) -> list[float]:
    """+1 for an answer without the sample data's rude phrases, -1 for one with them."""
    return [-1.0 if _RUDE.search(_text(c)) else 1.0 for c in completions]


def one_sentence(completions, **kwargs) -> list[float]:
    """Rewards answers that end their sentence (a full stop) within the completion, and stay short."""
    scores = []
    for c in completions:
        text = _text(c).strip()
        ended = "." in text
        scores.append((0.5 if ended else -0.5) - 0.01 * max(0, len(text) - 60))
    return scores
