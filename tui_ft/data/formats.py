"""Dataset formats: tell one from its keys, validate a record, normalise it to TRL's standard shapes.

Pure Python on plain dicts: nothing here imports datasets, transformers or torch.

Detection looks at the keys that mark a format, not at every required key, so a record that is missing
a required field is still recognised and `validate_record` can say which field is missing
(a preference row without `rejected` is a preference row with an error, not a prompt-only row).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum
from itertools import combinations
from pathlib import Path
from typing import Any

from tui_ft.errors import DataError


class Format(str, Enum):
    """The dataset formats tui-ft reads. The value is the name shown to people and in recipes."""

    text = "text"
    prompt_completion = "prompt_completion"
    messages = "messages"
    sharegpt = "sharegpt"
    alpaca = "alpaca"
    preference = "preference"
    preference_implicit = "preference_implicit"
    unpaired = "unpaired"
    classification = "classification"
    prompt_only = "prompt_only"
    ranking = "ranking"
    annotations = "annotations"  # an annotation store (prefs.store): decisions and retractions

    def __str__(self) -> str:
        return self.value


#: Keys each format requires, in the order they are reported; `alpaca`'s `input` is optional.
REQUIRED_FIELDS: dict[Format, tuple[str, ...]] = {
    Format.text: ("text",),
    Format.prompt_completion: ("prompt", "completion"),
    Format.messages: ("messages",),
    Format.sharegpt: ("conversations",),
    Format.alpaca: ("instruction", "output"),
    Format.preference: ("prompt", "chosen", "rejected"),
    Format.preference_implicit: ("chosen", "rejected"),
    Format.unpaired: ("prompt", "completion", "label"),
    Format.classification: ("text", "label"),
    Format.prompt_only: ("prompt",),
    Format.ranking: ("prompt", "responses"),
    Format.annotations: ("type",),
}

#: Keys a format reads (required and optional); everything else in a record is an extra column.
FORMAT_FIELDS: dict[Format, frozenset[str]] = {
    **{fmt: frozenset(keys) for fmt, keys in REQUIRED_FIELDS.items()},
    Format.alpaca: frozenset({"instruction", "input", "output"}),
}

#: One example record per format, for help messages and documentation.
EXAMPLES: dict[Format, str] = {
    Format.text: '{"text": "..."}',
    Format.prompt_completion: '{"prompt": "...", "completion": "..."}',
    Format.messages: '{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}',
    Format.sharegpt: '{"conversations": [{"from": "human", "value": "..."}, {"from": "gpt", "value": "..."}]}',
    Format.alpaca: '{"instruction": "...", "input": "...", "output": "..."}',
    Format.preference: '{"prompt": "...", "chosen": "...", "rejected": "..."}',
    Format.preference_implicit: '{"chosen": "...", "rejected": "..."}',
    Format.unpaired: '{"prompt": "...", "completion": "...", "label": true}',
    Format.classification: '{"text": "...", "label": 1}',
    Format.prompt_only: '{"prompt": "..."}',
    Format.ranking: '{"prompt": "...", "responses": ["best", "...", "worst"]}',
    Format.annotations: (
        '{"type": "decision", "pair": "...", "prompt": [...], "responses": [{"text": "...", "side": "A"}, '
        '{"text": "...", "side": "B"}], "label": "A", "annotator": "..."}'
    ),
}

#: The line types of an annotation store (`prefs.store`).
ANNOTATION_TYPES = ("decision", "retract")

#: Chat roles accepted in `messages` (OpenAI's fine-tuning format, with tool turns).
CHAT_ROLES = ("system", "developer", "user", "assistant", "tool")

#: ShareGPT speaker names and the chat role each becomes.
SHAREGPT_ROLES: dict[str, str] = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "function_call": "assistant",
    "tool": "tool",
    "observation": "tool",
}

#: Message keys kept by normalisation besides `role` and `content`.
_MESSAGE_EXTRA_KEYS = ("name", "tool_calls", "tool_call_id")


def detect_format(record: Mapping[str, Any]) -> Format | None:
    """The format a record is in, from the keys present; None when no format fits.

    Precedence, first match wins (the marking keys, not all required ones):

    0. `type` of decision or retract -> annotations (an annotation store's lines)
    1. `messages` -> messages
    2. `conversations` -> sharegpt
    3. `chosen` or `rejected` -> preference if `prompt` is present, else preference_implicit
    4. `responses` -> ranking
    5. `instruction` or `output` -> alpaca
    6. `prompt` with `label` -> unpaired
    7. `prompt` with `completion` -> prompt_completion
    8. `text` with `label` -> classification
    9. `text` -> text
    10. `prompt` -> prompt_only
    """
    if not isinstance(record, Mapping):
        return None
    keys = record.keys()
    if record.get("type") in ANNOTATION_TYPES:
        return Format.annotations
    if "messages" in keys:
        return Format.messages
    if "conversations" in keys:
        return Format.sharegpt
    if "chosen" in keys or "rejected" in keys:
        return Format.preference if "prompt" in keys else Format.preference_implicit
    if "responses" in keys:
        return Format.ranking
    if "instruction" in keys or "output" in keys:
        return Format.alpaca
    if "prompt" in keys and "label" in keys:
        return Format.unpaired
    if "prompt" in keys and "completion" in keys:
        return Format.prompt_completion
    if "text" in keys and "label" in keys:
        return Format.classification
    if "text" in keys:
        return Format.text
    if "prompt" in keys:
        return Format.prompt_only
    return None


def missing_fields(record: Mapping[str, Any], fmt: Format) -> list[str]:
    """Required fields of `fmt` that `record` lacks."""
    return [key for key in REQUIRED_FIELDS[fmt] if key not in record]


# --- validation ------------------------------------------------------------------------------------

Problems = list[tuple[str, str]]


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _check_messages(messages: Any, field: str, problems: Problems, *, need_assistant: bool) -> None:
    """Validate an OpenAI-style message list at `field`."""
    if not isinstance(messages, list):
        problems.append((field, f"expected a list of messages, got {_type_name(messages)}"))
        return
    if not messages:
        problems.append((field, "empty conversation: expected at least one message"))
        return
    has_assistant = False
    for i, message in enumerate(messages):
        where = f"{field}[{i}]"
        if not isinstance(message, dict):
            problems.append(
                (where, f"expected a message object with role and content, got {_type_name(message)}")
            )
            continue
        role = message.get("role")
        if "role" not in message:
            problems.append((f"{where}.role", "missing role"))
        elif not isinstance(role, str):
            problems.append((f"{where}.role", f"expected a string, got {_type_name(role)}"))
        elif role not in CHAT_ROLES:
            problems.append(
                (f"{where}.role", f"unknown role {role!r}; expected one of {', '.join(CHAT_ROLES)}")
            )
        has_assistant = has_assistant or role == "assistant"
        content = message.get("content")
        calls_tools = role == "assistant" and bool(message.get("tool_calls"))
        if content is None:
            if not calls_tools:
                problems.append((f"{where}.content", "message has no content"))
        elif not isinstance(content, str):
            problems.append((f"{where}.content", f"expected a string, got {_type_name(content)}"))
    if need_assistant and not has_assistant:
        problems.append((field, "conversation has no assistant message, so nothing would be trained"))


def _check_sharegpt(turns: Any, field: str, problems: Problems) -> None:
    if not isinstance(turns, list):
        problems.append((field, f"expected a list of turns, got {_type_name(turns)}"))
        return
    if not turns:
        problems.append((field, "empty conversation: expected at least one turn"))
        return
    has_assistant = False
    for i, turn in enumerate(turns):
        where = f"{field}[{i}]"
        if not isinstance(turn, dict):
            problems.append((where, f"expected a turn object with from and value, got {_type_name(turn)}"))
            continue
        speaker = turn.get("from")
        if "from" not in turn:
            problems.append((f"{where}.from", "missing from"))
        elif not isinstance(speaker, str):
            problems.append((f"{where}.from", f"expected a string, got {_type_name(speaker)}"))
        elif speaker not in SHAREGPT_ROLES:
            problems.append(
                (f"{where}.from", f"unknown speaker {speaker!r}; expected one of {', '.join(SHAREGPT_ROLES)}")
            )
        else:
            has_assistant = has_assistant or SHAREGPT_ROLES[speaker] == "assistant"
        value = turn.get("value")
        if value is None:
            problems.append((f"{where}.value", "turn has no value"))
        elif not isinstance(value, str):
            problems.append((f"{where}.value", f"expected a string, got {_type_name(value)}"))
    if not has_assistant:
        problems.append((field, "conversation has no gpt turn, so nothing would be trained"))


def _check_string(record: Mapping[str, Any], key: str, problems: Problems, *, optional: bool = False) -> None:
    if key not in record:
        if not optional:
            problems.append((key, "missing required field"))
        return
    value = record[key]
    if optional and value is None:
        return
    if not isinstance(value, str):
        problems.append((key, f"expected a string, got {_type_name(value)}"))


def _check_text_or_messages(
    record: Mapping[str, Any], keys: Iterable[str], problems: Problems, *, list_name: str = "message list"
) -> None:
    """Fields that are all strings or all message lists (TRL's standard vs conversational shapes)."""
    present = [k for k in keys if k in record]
    for key in keys:
        if key not in record:
            problems.append((key, "missing required field"))
    kinds = {}
    for key in present:
        value = record[key]
        if isinstance(value, str):
            kinds[key] = "text"
        elif isinstance(value, list):
            kinds[key] = "messages"
            _check_messages(value, key, problems, need_assistant=False)
        else:
            problems.append((key, f"expected a string or a {list_name}, got {_type_name(value)}"))
    if len(set(kinds.values())) > 1:
        texts = [k for k, v in kinds.items() if v == "text"]
        lists = [k for k, v in kinds.items() if v == "messages"]
        problems.append(
            (
                lists[0],
                f"mixes text and message lists: {', '.join(texts)} is text but {', '.join(lists)} "
                "is a message list; use one or the other",
            )
        )


def validate_record(record: Any, fmt: Format) -> list[tuple[str, str]]:
    """Problems with `record` as a row of format `fmt`: (field path, message) pairs; empty when valid.

    Field paths name the exact place, e.g. `messages[2].role` or `responses[1]`.
    """
    problems: Problems = []
    if not isinstance(record, Mapping):
        return [("", f"expected a JSON object, got {_type_name(record)}")]
    if fmt is Format.text:
        _check_string(record, "text", problems)
    elif fmt in (Format.prompt_completion,):
        _check_text_or_messages(record, ("prompt", "completion"), problems)
    elif fmt is Format.messages:
        if "messages" not in record:
            problems.append(("messages", "missing required field"))
        else:
            _check_messages(record["messages"], "messages", problems, need_assistant=True)
    elif fmt is Format.sharegpt:
        if "conversations" not in record:
            problems.append(("conversations", "missing required field"))
        else:
            _check_sharegpt(record["conversations"], "conversations", problems)
    elif fmt is Format.alpaca:
        _check_string(record, "instruction", problems)
        _check_string(record, "input", problems, optional=True)
        _check_string(record, "output", problems)
    elif fmt is Format.preference:
        if isinstance(record.get("prompt"), str) and _full_conversations(record):
            # A text prompt beside whole conversations (as in UltraFeedback): the prompt is implicit.
            _check_text_or_messages(record, ("chosen", "rejected"), problems)
        else:
            _check_text_or_messages(record, ("prompt", "chosen", "rejected"), problems)
    elif fmt is Format.preference_implicit:
        _check_text_or_messages(record, ("chosen", "rejected"), problems)
    elif fmt is Format.unpaired:
        _check_text_or_messages(record, ("prompt", "completion"), problems)
        if "label" not in record:
            problems.append(("label", "missing required field"))
        elif not isinstance(record["label"], bool):
            problems.append(("label", f"expected true or false, got {_type_name(record['label'])}"))
    elif fmt is Format.classification:
        _check_string(record, "text", problems)
        label = record.get("label")
        if "label" not in record:
            problems.append(("label", "missing required field"))
        elif not isinstance(label, (str, int)) or isinstance(label, bool):
            problems.append(("label", f"expected a class name or an integer, got {_type_name(label)}"))
    elif fmt is Format.prompt_only:
        _check_text_or_messages(record, ("prompt",), problems)
    elif fmt is Format.ranking:
        _validate_ranking(record, problems)
    elif fmt is Format.annotations:
        _validate_annotation(record, problems)
    return problems


def _validate_annotation(record: Mapping[str, Any], problems: Problems) -> None:
    """A store line: a decision the store can read back, or a retraction naming one."""
    from tui_ft.prefs.store import decision_from_json

    if record.get("type") == "retract":
        if not isinstance(record.get("retracts"), str):
            problems.append(("retracts", "expected the id of the decision taken back"))
        return
    try:
        decision_from_json(dict(record))
    except DataError as err:
        field, _, message = err.message.partition(": ")
        problems.append((field, message) if message else ("", err.message))


def _validate_ranking(record: Mapping[str, Any], problems: Problems) -> None:
    _check_text_or_messages(record, ("prompt",), problems)
    if "responses" not in record:
        problems.append(("responses", "missing required field"))
        return
    responses = record["responses"]
    if not isinstance(responses, list):
        problems.append(
            ("responses", f"expected a list of responses, best first, got {_type_name(responses)}")
        )
        return
    if len(responses) < 2:
        problems.append(("responses", f"expected at least 2 responses to rank, got {len(responses)}"))
    conversational = isinstance(record.get("prompt"), list)
    for i, response in enumerate(responses):
        where = f"responses[{i}]"
        if conversational:
            if isinstance(response, list):
                _check_messages(response, where, problems, need_assistant=False)
            else:
                problems.append(
                    (where, f"expected a message list like the prompt, got {_type_name(response)}")
                )
        elif not isinstance(response, str):
            problems.append((where, f"expected a string, got {_type_name(response)}"))


def _full_conversations(record: Mapping[str, Any]) -> bool:
    """True when chosen and rejected are message lists that hold the user turn themselves."""
    chosen, rejected = record.get("chosen"), record.get("rejected")
    return (
        isinstance(record.get("prompt"), str)
        and isinstance(chosen, list)
        and isinstance(rejected, list)
        and any(isinstance(m, dict) and m.get("role") == "user" for m in chosen)
    )


def split_implicit_prompt(chosen: Any, rejected: Any) -> tuple[Any, Any, Any]:
    """(prompt, chosen, rejected) from a pair whose prompt is their shared beginning.

    Message lists split at the first message that differs; strings at the first character that
    differs, moved back to the start of that word.
    """
    n = 0
    limit = min(len(chosen), len(rejected))
    while n < limit and chosen[n] == rejected[n]:
        n += 1
    if isinstance(chosen, str):
        while n > 0 and not chosen[n - 1].isspace():
            n -= 1
    return chosen[:n], chosen[n:], rejected[n:]


# --- normalisation ---------------------------------------------------------------------------------


def _clean_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Role and content, plus tool fields where present (so Arrow columns stay narrow)."""
    cleaned = []
    for message in messages:
        out = {"role": message["role"], "content": message.get("content")}
        for key in _MESSAGE_EXTRA_KEYS:
            if message.get(key) is not None:
                out[key] = message[key]
        cleaned.append(out)
    return cleaned


def _text_or_messages(value: Any) -> Any:
    return _clean_messages(value) if isinstance(value, list) else value


def normalise(record: Mapping[str, Any], fmt: Format, *, keep_extra: bool = False) -> dict[str, Any]:
    """`record` (already valid for `fmt`) in TRL's standard shape for its kind of data.

    text -> {text}; prompt_completion -> {prompt, completion}; messages and sharegpt -> {messages};
    alpaca -> conversational {prompt: [user], completion: [assistant]}; preference -> {prompt, chosen,
    rejected}; preference_implicit -> {chosen, rejected}; unpaired -> {prompt, completion, label};
    classification -> {text, label}; prompt_only -> {prompt}; ranking -> {prompt, responses}
    (turn it into pairs with `expand_ranking`). Keys a format does not read are dropped unless
    `keep_extra` (GRPO passes extra columns on to reward functions).
    """
    out: dict[str, Any]
    if fmt is Format.text:
        out = {"text": record["text"]}
    elif fmt is Format.prompt_completion:
        out = {
            "prompt": _text_or_messages(record["prompt"]),
            "completion": _text_or_messages(record["completion"]),
        }
    elif fmt is Format.messages:
        out = {"messages": _clean_messages(record["messages"])}
    elif fmt is Format.sharegpt:
        out = {
            "messages": [
                {"role": SHAREGPT_ROLES[turn["from"]], "content": turn["value"]}
                for turn in record["conversations"]
            ]
        }
    elif fmt is Format.alpaca:
        user = record["instruction"]
        if record.get("input"):
            user = f"{user}\n\n{record['input']}"
        out = {
            "prompt": [{"role": "user", "content": user}],
            "completion": [{"role": "assistant", "content": record["output"]}],
        }
    elif fmt is Format.preference:
        keys = ("chosen", "rejected") if _full_conversations(record) else ("prompt", "chosen", "rejected")
        out = {key: _text_or_messages(record[key]) for key in keys}
    elif fmt is Format.preference_implicit:
        out = {key: _text_or_messages(record[key]) for key in ("chosen", "rejected")}
    elif fmt is Format.unpaired:
        out = {
            "prompt": _text_or_messages(record["prompt"]),
            "completion": _text_or_messages(record["completion"]),
            "label": record["label"],
        }
    elif fmt is Format.classification:
        out = {"text": record["text"], "label": record["label"]}
    elif fmt is Format.prompt_only:
        out = {"prompt": _text_or_messages(record["prompt"])}
    elif fmt is Format.ranking:
        out = {
            "prompt": _text_or_messages(record["prompt"]),
            "responses": [_text_or_messages(r) for r in record["responses"]],
        }
    elif fmt is Format.annotations:
        out = dict(record)  # a store is read whole (retractions apply across lines): data.training
    else:  # pragma: no cover - the enum is closed
        raise ValueError(f"unknown format {fmt!r}")
    if keep_extra:
        for key, value in record.items():
            if key not in FORMAT_FIELDS[fmt] and key not in out:
                out[key] = value
    return out


def expand_ranking(record: Mapping[str, Any], mode: str = "all") -> list[dict[str, Any]]:
    """Preference rows from a ranked record {prompt, responses: [best, ..., worst]}.

    `all`: every pair i < j, the better (i) chosen over the worse (j): n(n-1)/2 rows.
    `adjacent`: only neighbours (i, i+1): n-1 rows.
    """
    responses = list(record["responses"])
    if mode == "all":
        pairs: Iterable[tuple[int, int]] = combinations(range(len(responses)), 2)
    elif mode == "adjacent":
        pairs = ((i, i + 1) for i in range(len(responses) - 1))
    else:
        raise DataError(f"unknown ranking mode {mode!r}; expected all or adjacent", field="ranking_mode")
    return [{"prompt": record["prompt"], "chosen": responses[i], "rejected": responses[j]} for i, j in pairs]


# --- methods ---------------------------------------------------------------------------------------

_PREFERENCE_FORMATS = (Format.preference, Format.preference_implicit, Format.ranking, Format.annotations)

#: Formats each training method accepts. Conversions happen in `rows_for_method`:
#: ranking is expanded into pairs; KTO splits preference pairs into unpaired rows;
#: GRPO/RLOO keep only the prompt part.
METHOD_FORMATS: dict[str, tuple[Format, ...]] = {
    "sft": (Format.text, Format.prompt_completion, Format.messages, Format.sharegpt, Format.alpaca),
    "dpo": _PREFERENCE_FORMATS,
    "orpo": _PREFERENCE_FORMATS,
    "cpo": _PREFERENCE_FORMATS,
    "reward": _PREFERENCE_FORMATS,
    "kto": (Format.unpaired, Format.preference, Format.annotations),
    "grpo": (Format.prompt_only, Format.prompt_completion, Format.messages, Format.preference),
    "rloo": (Format.prompt_only, Format.prompt_completion, Format.messages, Format.preference),
    "classify": (Format.classification,),
}


def label_name(label: str | int) -> str:
    """A classification label as its class name: class names stay, integers become their digits (a
    JSONL `1`, a CSV `1` and a `"1"` are one class)."""
    return label if isinstance(label, str) else str(label)


def class_names(labels: Iterable[str | int]) -> tuple[str, ...]:
    """The classes of a classification dataset, in label-id order: numerically when every label is an
    integer (label `k` keeps id `k` when the labels are 0..n-1), else alphabetically."""
    names = {label_name(label) for label in labels}
    if all(_is_integer(n) for n in names):
        return tuple(sorted(names, key=int))
    return tuple(sorted(names))


def _is_integer(text: str) -> bool:
    return text.lstrip("-").isdigit()


def check_method_format(method: str, fmt: Format, path: str | Path | None = None) -> None:
    """Raise DataError when a file in format `fmt` cannot train with `method`."""
    accepted = METHOD_FORMATS.get(method)
    if accepted is None:
        raise DataError(
            f"unknown training method {method!r}; expected one of {', '.join(METHOD_FORMATS)}", field="method"
        )
    if fmt not in accepted:
        raise DataError(
            f"this file is in format {fmt.value}; method {method} needs one of "
            f"{', '.join(f.value for f in accepted)}",
            path=path,
            hint=f"a {method} row looks like {EXAMPLES[accepted[0]]}",
        )


def _prompt_part(record: Mapping[str, Any], fmt: Format) -> Any:
    """The prompt a generation method starts from."""
    if fmt is Format.preference and "prompt" not in record:
        return split_implicit_prompt(record["chosen"], record["rejected"])[0]
    if fmt is Format.messages:
        messages = record["messages"]
        # Everything before the last assistant turn is the context the model answers.
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=len(messages))
        return messages[:last] or messages
    return record["prompt"]


def rows_for_method(
    record: Mapping[str, Any], fmt: Format, method: str, *, ranking_mode: str = "all"
) -> list[dict[str, Any]]:
    """Training rows for `method` from one normalised record (one row, or several for ranking and KTO)."""
    if method in ("dpo", "orpo", "cpo", "reward") and fmt is Format.ranking:
        return expand_ranking(record, ranking_mode)
    if method == "kto" and fmt is Format.preference:
        if "prompt" in record:
            prompt, chosen, rejected = record["prompt"], record["chosen"], record["rejected"]
        else:
            prompt, chosen, rejected = split_implicit_prompt(record["chosen"], record["rejected"])
        return [
            {"prompt": prompt, "completion": chosen, "label": True},
            {"prompt": prompt, "completion": rejected, "label": False},
        ]
    if method in ("grpo", "rloo"):
        extra = {k: v for k, v in record.items() if k not in FORMAT_FIELDS[fmt]}
        return [{"prompt": _prompt_part(record, fmt), **extra}]
    return [dict(record)]
