"""What packing saves, and how a packed SFT batch is sized: pure arithmetic on token lengths, no libraries.

A padded batch is as long as its longest example (at most max_length); its other rows are filled with pad
tokens that cost compute and train nothing. Packing (best-fit decreasing) puts whole examples side by side
into sequences of up to max_length tokens, and padding-free training feeds them without pad tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def padding_share(lengths: Sequence[int], batch_size: int, max_length: int | None) -> float:
    """The expected share of a padded batch's tokens that are padding, for batches of `batch_size` rows drawn
    at random from examples of these token `lengths`, each padded to the longest in its batch and cut at
    `max_length` (None: not cut). Exact expectation over random batches (order statistics), 0.0 with no
    rows or one row per batch."""
    capped = sorted(min(n, max_length) if max_length else n for n in lengths if n > 0)
    n = len(capped)
    if n == 0 or batch_size <= 1:
        return 0.0
    b = min(batch_size, n)
    # E[longest of b rows drawn without replacement] = sum_i L_(i) * C(i-1, b-1) / C(n, b), with L sorted
    # ascending and i counted from 1; computed in logs so a million rows neither overflow nor underflow.
    log_total = _log_comb(n, b)
    expected_longest = 0.0
    for i in range(b, n + 1):
        expected_longest += capped[i - 1] * math.exp(_log_comb(i - 1, b - 1) - log_total)
    mean = sum(capped) / n
    if expected_longest <= 0:
        return 0.0
    return max(0.0, 1.0 - mean / expected_longest)


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


@dataclass(frozen=True)
class PackedBatch:
    """How a packed run batches: `sequences` packed sequences of up to `length` tokens per device step."""

    length: int
    sequences: int
    tokens_per_padded_batch: float  # the non-pad tokens a padded batch of the recipe's size holds, on average

    def describe(self, batch_size: int) -> str:
        return (
            f"{self.sequences} packed sequence{'s' if self.sequences != 1 else ''} of up to {self.length} tokens "
            f"per device step (a padded batch of {batch_size} rows holds {self.tokens_per_padded_batch:.0f} "
            "tokens on average)"
        )


def packed_batch(lengths: Sequence[int], batch_size: int, max_length: int) -> PackedBatch:
    """Size packed batches so a step trains about as many tokens as a padded batch of `batch_size` rows
    would: the optimisation (tokens per step, steps per epoch, the learning-rate schedule) stays what the
    recipe describes, and only the pad tokens go. Each packed sequence is as long as the longest example
    (so none is cut that padding would keep) and at least one padded batch's worth, at most `max_length`."""
    kept = [min(n, max_length) for n in lengths if n > 0]
    if not kept:
        return PackedBatch(max_length, 1, 0.0)
    per_batch = batch_size * sum(kept) / len(kept)
    length = min(max_length, max(max(kept), math.ceil(per_batch)))
    return PackedBatch(length, max(1, round(per_batch / length)), per_batch)
