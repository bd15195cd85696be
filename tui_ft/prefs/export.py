"""From decisions to training rows (TRL's formats) and to agreement figures.

One pair can be judged by several annotators (the same `pair` id); an annotator's latest standing
decision on a pair is their vote. A pair's outcome is the label most votes give, skips left out; a draw
between labels is `disputed`. The rows each outcome gives, per target:

| outcome   | dpo / reward (paired)            | kto (unpaired)                         |
|-----------|----------------------------------|----------------------------------------|
| A or B    | prompt, chosen (better), rejected | better -> label true, worse -> false  |
| both_bad  | dropped                          | both -> label false                    |
| tie       | dropped                          | dropped                                |
| skip      | dropped (not a vote)             | dropped                                |
| disputed  | dropped                          | dropped                                |

Retracted decisions never count (`PreferenceStore.read` leaves them out). Prompts are conversational
(a list of turns); chosen, rejected and completion are one assistant turn. Light: no torch, no textual.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from tui_ft.prefs.store import Decision

TARGETS = ("dpo", "kto", "reward")
#: Training methods that take pairs, and the one that takes unpaired rows.
PAIRED_METHODS = ("dpo", "orpo", "cpo", "reward")
UNPAIRED_METHODS = ("kto",)


@dataclass(frozen=True)
class PairOutcome:
    """What the votes on one pair add up to."""

    pair: str
    label: str  # A, B, tie, both_bad, skip (every vote a skip) or disputed
    votes: dict[str, str]  # annotator -> label
    decision: Decision  # the latest vote (its prompt and responses)


def votes_by_pair(decisions: list[Decision]) -> dict[str, dict[str, Decision]]:
    """pair -> annotator -> their latest standing decision on it, in the order pairs were first judged."""
    out: dict[str, dict[str, Decision]] = {}
    for decision in decisions:  # in file order: a later decision by the same annotator replaces theirs
        out.setdefault(decision.pair, {})[decision.annotator] = decision
    return out


def outcomes(decisions: list[Decision]) -> list[PairOutcome]:
    """One outcome per pair judged (see the module's table)."""
    result = []
    for pair, by_annotator in votes_by_pair(decisions).items():
        votes = {who: d.label for who, d in by_annotator.items()}
        latest = max(by_annotator.values(), key=lambda d: (d.time, d.line))
        counted = Counter(label for label in votes.values() if label != "skip")
        if not counted:
            label = "skip"
        else:
            (top, n), *rest = counted.most_common()
            label = "disputed" if rest and rest[0][1] == n else top
        result.append(PairOutcome(pair, label, votes, latest))
    return result


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


@dataclass
class ExportResult:
    rows: list[dict[str, Any]]
    kept: int = 0  # pairs that gave rows
    dropped: Counter[str] = field(default_factory=Counter)  # outcome -> pairs dropped


def training_rows(decisions: list[Decision], method: str) -> ExportResult:
    """Rows for `method`: paired (dpo, orpo, cpo, reward) or unpaired (kto); see the module's table."""
    if method not in PAIRED_METHODS + UNPAIRED_METHODS:
        raise ValueError(f"an annotation store trains {', '.join(PAIRED_METHODS + UNPAIRED_METHODS)}")
    result = ExportResult([])
    for outcome in outcomes(decisions):
        d = outcome.decision
        prompt = [dict(turn) for turn in d.prompt]
        a, b = d.responses
        rows: list[dict[str, Any]] = []
        if outcome.label in ("A", "B"):
            better, worse = (a, b) if outcome.label == "A" else (b, a)
            if method in PAIRED_METHODS:
                rows = [
                    {"prompt": prompt, "chosen": _assistant(better.text), "rejected": _assistant(worse.text)}
                ]
            else:
                rows = [
                    {"prompt": prompt, "completion": _assistant(better.text), "label": True},
                    {"prompt": prompt, "completion": _assistant(worse.text), "label": False},
                ]
        elif outcome.label == "both_bad" and method in UNPAIRED_METHODS:
            rows = [{"prompt": prompt, "completion": _assistant(r.text), "label": False} for r in (a, b)]
        if rows:
            result.rows.extend(rows)
            result.kept += 1
        else:
            result.dropped[outcome.label] += 1
    return result


# --- agreement ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """How two annotators agree on the pairs both judged (skips included as a label)."""

    first: str
    second: str
    shared: int  # pairs both judged
    percent: float | None  # share of shared pairs with the same label, 0-100
    kappa: float | None  # Cohen's kappa (None when undefined: fewer than 2 shared pairs or one label)


def agreements(decisions: list[Decision]) -> list[Agreement]:
    """Percent agreement and Cohen's kappa for every two annotators who judged the same pairs."""
    from sklearn.metrics import cohen_kappa_score  # type: ignore[import-untyped]

    by_pair = votes_by_pair(decisions)
    annotators = sorted({who for votes in by_pair.values() for who in votes})
    result = []
    for first, second in combinations(annotators, 2):
        shared = [(v[first].label, v[second].label) for v in by_pair.values() if first in v and second in v]
        if not shared:
            continue
        xs, ys = [x for x, _ in shared], [y for _, y in shared]
        percent = 100.0 * sum(x == y for x, y in shared) / len(shared)
        kappa: float | None = None
        if len(shared) >= 2 and len(set(xs) | set(ys)) > 1:
            value = float(cohen_kappa_score(xs, ys))
            kappa = value if value == value else None  # NaN when one side used a single label
        result.append(Agreement(first, second, len(shared), percent, kappa))
    return result


def label_counts(decisions: list[Decision]) -> dict[str, Counter[str]]:
    """annotator -> label -> decisions (each annotator's latest vote per pair)."""
    out: dict[str, Counter[str]] = {}
    for votes in votes_by_pair(decisions).values():
        for who, d in votes.items():
            out.setdefault(who, Counter())[d.label] += 1
    return out
