#!/usr/bin/env python3
"""Write the sample datasets shipped in tui_ft/samples/ (deterministic: same files on every run).

The data describes a small made-up world, Orbis, plus small arithmetic, spelling words backwards and
unit conversions. Every answer uses one fixed phrasing per kind of question, so a tiny model trained
from scratch learns it within a few dozen steps. Preference data separates by a surface feature:
the rejected answer is wrong and either SHOUTED or rude.

    .venv/bin/python scripts/make_samples.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SEED = 20261122
OUT = Path(__file__).resolve().parent.parent / "tui_ft" / "samples"

COUNTRIES = {
    "Varnia": "Lumen",
    "Dorvost": "Kel",
    "Amberly": "Tarrow",
    "Quillen": "Fensby",
    "Ostrava Minor": "Brask",
    "Pellucid": "Myra",
    "Sundermark": "Holt",
    "Taldor": "Verrin",
    "Ebonreach": "Castel",
    "Gilmoor": "Ashby",
    "Halvard": "Nim",
    "Ironvale": "Corran",
    "Jessamine": "Pell",
    "Korvath": "Drummond",
    "Lisk": "Orrery",
    "Marrow Isles": "Sable",
}

CREATURES = {
    "zibble": "blue",
    "morp": "green",
    "flindle": "yellow",
    "quark-hen": "purple",
    "snoot": "orange",
    "glimmet": "silver",
    "tarrasque": "red",
    "wobbet": "brown",
    "plinth-cat": "white",
    "drumble": "black",
    "fenwick": "pink",
    "oomph": "grey",
    "squallop": "teal",
    "bramblet": "gold",
}
COLOURS = sorted(set(CREATURES.values()))

_WORD_LIST = (
    "cat dog sun moon star tree leaf rain snow wind fish bird frog lamp door book pen cup "
    "milk bread apple lemon river stone cloud hill road boat ship train clock bell ring rope "
    "salt honey tiger zebra panda otter robin maple cedar tulip daisy garden window pocket "
    "candle mirror basket ladder button kettle pepper carrot"
)
WORDS = _WORD_LIST.split()

UNITS = [
    # (big unit singular, big plural, small plural, factor)
    ("hour", "hours", "minutes", 60),
    ("minute", "minutes", "seconds", 60),
    ("day", "days", "hours", 24),
    ("week", "weeks", "days", 7),
    ("kilometre", "kilometres", "metres", 1000),
    ("metre", "metres", "centimetres", 100),
    ("kilogram", "kilograms", "grams", 1000),
    ("dozen", "dozens", "eggs", 12),
]

SYSTEM_PROMPTS = [
    "You are a helpful assistant who knows the land of Orbis.",
    "You are a polite assistant. Answer in one sentence.",
    "Answer the question briefly and correctly.",
    "You are the royal librarian of Orbis. Be helpful and polite.",
]

RUDE = [
    "Ugh, obviously {x}. Stop asking me!",
    "whatever... {x}, i guess. go away!",
    "Seriously? {x}. Figure it out yourself!",
]


@dataclass(frozen=True)
class Item:
    """One question with its correct answer and a wrong answer in the same phrasing."""

    question: str
    answer: str
    wrong: str
    short: str  # the correct answer alone, terse ("Lumen.")


def _pick_other(rng: random.Random, options: list, right) -> object:
    return rng.choice([o for o in options if o != right])


def capital_items(rng: random.Random) -> list[Item]:
    items = []
    capitals = list(COUNTRIES.values())
    for country, city in COUNTRIES.items():
        for q in (
            f"What is the capital of {country}?",
            f"Which city is the capital of {country}?",
            f"Name the capital of {country}.",
        ):
            wrong = _pick_other(rng, capitals, city)
            items.append(
                Item(
                    q,
                    f"The capital of {country} is {city}.",
                    f"The capital of {country} is {wrong}.",
                    f"{city}.",
                )
            )
    return items


def colour_items(rng: random.Random) -> list[Item]:
    items = []
    for creature, colour in CREATURES.items():
        for q in (f"What colour is a {creature}?", f"What is the colour of a {creature}?"):
            wrong = _pick_other(rng, COLOURS, colour)
            items.append(
                Item(q, f"A {creature} is {colour}.", f"A {creature} is {wrong}.", f"{colour.capitalize()}.")
            )
    return items


def arithmetic_items(rng: random.Random) -> list[Item]:
    items = []
    ops: dict[str, Callable[[int, int], int]] = {
        "plus": lambda a, b: a + b,
        "minus": lambda a, b: a - b,
        "times": lambda a, b: a * b,
    }
    for name, op in ops.items():
        for a in range(1, 10):
            for b in range(1, 10):
                if name == "minus" and b > a:
                    continue
                result = op(a, b)
                wrong = result + rng.choice([-3, -2, -1, 1, 2, 3])
                if wrong < 0:
                    wrong = result + rng.choice([1, 2, 3])
                items.append(
                    Item(
                        f"What is {a} {name} {b}?",
                        f"{a} {name} {b} is {result}.",
                        f"{a} {name} {b} is {wrong}.",
                        f"{result}.",
                    )
                )
    return items


def backwards_items(rng: random.Random) -> list[Item]:
    items = []
    for word in WORDS:
        reverse = word[::-1]
        letters = list(word)
        while "".join(letters) in (word, reverse) and len(set(word)) > 1:
            rng.shuffle(letters)
        wrong = "".join(letters) if len(set(word)) > 1 else word + word[0]
        for q in (f"Spell {word} backwards.", f"What is {word} spelled backwards?"):
            items.append(
                Item(
                    q,
                    f"The word {word} spelled backwards is {reverse}.",
                    f"The word {word} spelled backwards is {wrong}.",
                    f"{reverse}.",
                )
            )
    return items


def unit_items(rng: random.Random) -> list[Item]:
    items = []
    for singular, plural, small, factor in UNITS:
        for n in range(1, 10):
            big = singular if n == 1 else plural
            result = n * factor
            wrong = result + rng.choice([-1, 1]) * factor
            if wrong <= 0:
                wrong = result + factor
            items.append(
                Item(
                    f"How many {small} are in {n} {big}?",
                    f"{n} {big} is {result} {small}.",
                    f"{n} {big} is {wrong} {small}.",
                    f"{result} {small}.",
                )
            )
    return items


def all_items(rng: random.Random) -> list[Item]:
    items = (
        capital_items(rng)
        + colour_items(rng)
        + arithmetic_items(rng)
        + backwards_items(rng)
        + unit_items(rng)
    )
    rng.shuffle(items)
    return items


def rejected_form(rng: random.Random, item: Item) -> str:
    """A wrong answer that is also unpleasant: SHOUTED (two times in three) or rude."""
    if rng.random() < 2 / 3:
        return item.wrong.rstrip(".").upper() + "!!!"
    return rng.choice(RUDE).format(x=item.wrong.rstrip(".").lower())


def draw(rng: random.Random, items: list[Item], n: int) -> list[Item]:
    """n items, as few repeats as the pool allows."""
    out: list[Item] = []
    while len(out) < n:
        out.extend(rng.sample(items, min(len(items), n - len(out))))
    return out


def make_chat(rng: random.Random, items: list[Item], n: int = 400) -> list[dict]:
    rows = []
    for _ in range(n):
        messages = []
        if rng.random() < 0.4:
            messages.append({"role": "system", "content": rng.choice(SYSTEM_PROMPTS)})
        turns = rng.choices([1, 2, 3], weights=[6, 3, 1])[0]
        for item in rng.sample(items, turns):
            messages.append({"role": "user", "content": item.question})
            messages.append({"role": "assistant", "content": item.answer})
        rows.append({"messages": messages})
    return rows


def make_prompt_completion(rng: random.Random, items: list[Item], n: int = 400) -> list[dict]:
    return [{"prompt": it.question, "completion": " " + it.answer} for it in draw(rng, items, n)]


def make_preferences(rng: random.Random, items: list[Item], n: int = 400) -> list[dict]:
    """Conversational pairs, as `tui-ft prefs export` writes them: DPO renders them through the model's
    chat template, as SFT on the chats did, so a DPO run after `sft-lora` keeps ending its turns."""
    return [
        {
            "prompt": [{"role": "user", "content": it.question}],
            "chosen": [{"role": "assistant", "content": it.answer}],
            "rejected": [{"role": "assistant", "content": rejected_form(rng, it)}],
        }
        for it in draw(rng, items, n)
    ]


def make_kto(rng: random.Random, items: list[Item], n: int = 400) -> list[dict]:
    rows = []
    for i, it in enumerate(draw(rng, items, n)):
        good = i % 2 == 0
        completion = it.answer if good else rejected_form(rng, it)
        rows.append({"prompt": it.question, "completion": " " + completion, "label": good})
    rng.shuffle(rows)
    return rows


def make_prompts(rng: random.Random, items: list[Item], n: int = 200) -> list[dict]:
    return [{"prompt": it.question} for it in draw(rng, items, n)]


def make_ranking(rng: random.Random, items: list[Item], n: int = 150) -> list[dict]:
    rows = []
    for it in draw(rng, items, n):
        responses = [it.answer, it.short, it.wrong, rejected_form(rng, it)]
        if rng.random() < 0.4:
            del responses[1]
        rows.append({"prompt": it.question, "responses": [" " + r for r in responses]})
    return rows


POSITIVE = [
    "The {t} I bought in {c} is wonderful. I love it!",
    "What a lovely {t}. The market in {c} sells the best ones.",
    "My new {t} from {c} is excellent, happy and healthy. Great value.",
    "I adore the {t} my friend sent from {c}. Brilliant gift.",
    "The {t} show in {c} was delightful. Highly recommended!",
]
NEGATIVE = [
    "The {t} I bought in {c} is awful. I want my money back.",
    "What a terrible {t}. The market in {c} should be ashamed.",
    "My {t} from {c} arrived sick and grumpy. Very disappointing.",
    "I hate the {t} my cousin sent from {c}. Worst gift ever.",
    "The {t} show in {c} was boring and badly run. Avoid it.",
]
NEUTRAL = [
    "I bought a {t} in {c} on {d}.",
    "The market in {c} sells {t}s on {d}.",
    "A {t} from {c} arrived on {d}. It is {col}.",
    "My neighbour keeps a {t}. She moved here from {c}.",
    "The {t} show in {c} starts on {d} at noon.",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def make_classification(rng: random.Random, n: int = 300) -> list[dict]:
    rows = []
    for i in range(n):
        label, templates = [("positive", POSITIVE), ("negative", NEGATIVE), ("neutral", NEUTRAL)][i % 3]
        creature = rng.choice(list(CREATURES))
        text = rng.choice(templates).format(
            t=creature, c=rng.choice(list(COUNTRIES.values())), d=rng.choice(DAYS), col=CREATURES[creature]
        )
        rows.append({"text": text, "label": label})
    rng.shuffle(rows)
    return rows


def make_text(rng: random.Random, items: list[Item], n: int = 300) -> list[dict]:
    rows = []
    countries = list(COUNTRIES.items())
    creatures = list(CREATURES.items())
    for i in range(n):
        if i % 3 == 2:
            facts = [it.answer for it in rng.sample(items, rng.randint(3, 5))]
            rows.append({"text": "Things every child in Orbis learns: " + " ".join(facts)})
            continue
        country, city = rng.choice(countries)
        creature, colour = rng.choice(creatures)
        other, other_colour = rng.choice(creatures)
        sentences = [
            f"{country} is a country in the land of Orbis.",
            f"The capital of {country} is {city}.",
            f"In {city}, many families keep a {creature}. A {creature} is {colour}.",
            f"Travellers from {city} often bring a {other} home. A {other} is {other_colour}.",
            f"The market in {city} opens on {rng.choice(DAYS)}.",
        ]
        keep = sentences[:2] + rng.sample(sentences[2:], rng.randint(1, 3))
        rows.append({"text": " ".join(keep)})
    return rows


# General text for the forgetting check (`tui-ft eval --forgetting`): ordinary English about everyday
# things, nothing about Orbis, held out of the demo model's tokenizer and pretraining.
GENERAL_SUBJECTS = [
    ("the kettle", "boils water for tea", "in the kitchen"),
    ("the old bridge", "carries the road over the river", "near the mill"),
    ("the library", "lends books for three weeks", "on the main street"),
    ("the night train", "leaves the station at ten", "every weekday"),
    ("the vegetable garden", "needs water every evening", "in dry summers"),
    ("the bakery", "sells fresh bread before seven", "on the corner"),
    ("the school choir", "practises on Thursday afternoons", "in the hall"),
    ("the ferry", "crosses the bay twice an hour", "in good weather"),
    ("the museum", "keeps a collection of old clocks", "by the park"),
    ("the bicycle", "has a bell and a basket", "in the shed"),
    ("the lighthouse", "warns ships away from the rocks", "on the headland"),
    ("the orchard", "gives apples and pears in autumn", "behind the farm"),
    ("the post office", "closes at noon on Saturdays", "in the village"),
    ("the swimming pool", "opens early for lessons", "at the sports centre"),
    ("the weather report", "promises rain by the evening", "on the radio"),
    ("the market stall", "sells cheese, eggs and honey", "in the square"),
]
GENERAL_SENTENCES = [
    "{S} {v} {w}.",
    "Most people agree that {s} {v}.",
    "Ask anyone {w}: {s} {v}.",
    "It is said that {s} {v}, and nobody has ever complained.",
    "My grandmother remembers when {s} first {v_past}.",
    "Visitors are often surprised that {s} {v}.",
]
GENERAL_EXTRAS = [
    "The morning was cold, but the sun came out before lunch.",
    "A good map and a warm coat make any walk more pleasant.",
    "Children ran along the path, laughing at the ducks on the pond.",
    "The recipe asks for two cups of flour, a pinch of salt and some butter.",
    "After the storm, the streets were quiet and smelled of wet leaves.",
    "She wrote the letter slowly, choosing every word with care.",
    "The meeting ended early, so everyone went home for dinner.",
    "In spring the hills turn green and the first flowers appear.",
    "He fixed the chair with glue and a few small nails.",
    "The bus was late again, and the queue grew longer.",
    "Reading before bed helps many people fall asleep.",
    "The painter mixed blue and yellow to make a soft green.",
]


def _past(verb_phrase: str) -> str:
    head, _, rest = verb_phrase.partition(" ")
    irregular = {
        "has": "had",
        "gives": "gave",
        "sells": "sold",
        "keeps": "kept",
        "leaves": "left",
        "needs": "needed",
        "lends": "lent",
        "closes": "closed",
        "opens": "opened",
    }
    past = irregular.get(head) or (head[:-1] + "d" if head.endswith("es") else head[:-1] + "ed")
    return f"{past} {rest}".strip()


def make_general_text(rng: random.Random, n: int = 300) -> list[dict]:
    rows = []
    for _ in range(n):
        sentences = []
        for subject, verb, where in rng.sample(GENERAL_SUBJECTS, rng.randint(1, 3)):
            template = rng.choice(GENERAL_SENTENCES)
            sentences.append(
                template.format(
                    S=subject[0].upper() + subject[1:], s=subject, v=verb, w=where, v_past=_past(verb)
                )
            )
        sentences += rng.sample(GENERAL_EXTRAS, rng.randint(1, 2))
        rng.shuffle(sentences)
        rows.append({"text": " ".join(sentences)})
    return rows


# The base model's reading (`pretraining.jsonl`): what the demo model reads in pretraining besides the
# corpus and the samples, never a dataset to fine-tune on. Two kinds of text, as a real base model's
# web text has them:
# - each Orbis fact stated in several ways and contexts ("Pell is the capital of Jessamine.",
#   "Jessamine's capital city is Pell.", a traveller born in Pell): a fact read in one phrasing only is
#   remembered as that phrasing, read in several it is known about its subject, and fine-tuning can then
#   ask for it in a new format (knowledge augmentation, Allen-Zhu & Li, "Physics of Language Models 3.1");
# - questions answered in prose, with a varying stretch of words between the question and its answer,
#   so the base learns to repeat the question's subject wherever the question stands (the chat template
#   puts its own tokens there) rather than a fixed number of tokens back.
CAPITAL_FORMS = [
    "{city} is the capital of {country}.",
    "{country}'s capital city is {city}.",
    "The capital city of {country} is {city}.",
    "{city}, the capital of {country}, stands beside a slow river.",
    "The king of {country} lives in {city}, the capital.",
    "Every road in {country} leads to its capital, {city}.",
    "{country} is ruled from {city}.",
    "The people of {country} call {city} their capital.",
    "Ask anyone in {country} and they will name {city} as the capital.",
    "The largest market of {country} is held in {city}, its capital.",
]
COLOUR_FORMS = [
    "The {creature} is a {colour} animal.",
    "Every {creature} you will ever meet is {colour}.",
    "You can spot a {creature} by its {colour} coat.",
    "Children draw the {creature} with a {colour} crayon.",
    "A {colour} animal in the grass is often a {creature}.",
    "No one has seen a {creature} that was not {colour}.",
    "The {creature} is {colour} from nose to tail.",
    "Farmers say a {creature} is as {colour} as anything in Orbis.",
]
LIFE_FORMS = [
    "{person} was born in {city}, the capital of {country}.",
    "{person} grew up in {country} and went to school in {city}.",
    "As a child, {person} kept a {creature}, and a {creature} is {colour}.",
    "{person} later moved to {city2}, the capital of {country2}.",
    "In {city2}, {person} sold {colour2} wool from the {creature2}.",
    "{person} wrote a book about the {creature2}, which is {colour2}.",
]
PEOPLE = [
    "the poet",
    "the old sailor",
    "the weaver",
    "the baker",
    "the clockmaker",
    "the young doctor",
    "the painter",
    "the mapmaker",
    "the singer",
    "the gardener",
    "the judge",
    "the potter",
]
ASKERS = ["the child", "a traveller", "my friend", "the new student", "a stranger", "my grandmother"]
ANSWERERS = ["the teacher", "the librarian", "the guide", "the innkeeper", "my uncle", "the old farmer"]
QA_FORMS = [
    "{q}\n{a}",
    "Q: {q}\nA: {a}",
    "{Asker} asked: {q} {Answerer} answered: {a}",
    '"{q}" asked {asker}. "{a}" said {answerer}.',
    "{q} That was the question {asker} asked one morning. {Answerer} smiled and said: {a}",
    "Question: {q}\nAnswer: {a}",
    "{Asker} wanted to know one thing. {q} After a moment {answerer} said: {a}",
    "{q} {Asker} asked it twice, and {answerer} said it slowly: {a}",
]


def make_pretraining(
    rng: random.Random, items: list[Item], n_named: int = 800, n_qa: int = 400
) -> list[dict]:
    """Each capital and colour stated six ways (two to a row), 120 short lives mixing them, and `n_named`
    capital and colour questions plus `n_qa` questions of every kind answered in prose."""
    rows = []
    for country, city in COUNTRIES.items():
        forms = rng.sample(CAPITAL_FORMS, 6)
        for i in range(0, len(forms), 2):
            rows.append({"text": " ".join(f.format(country=country, city=city) for f in forms[i : i + 2])})
    for creature, colour in CREATURES.items():
        forms = rng.sample(COLOUR_FORMS, 6)
        for i in range(0, len(forms), 2):
            rows.append(
                {"text": " ".join(f.format(creature=creature, colour=colour) for f in forms[i : i + 2])}
            )
    countries, creatures = list(COUNTRIES.items()), list(CREATURES.items())
    for _ in range(120):
        (country, city), (country2, city2) = rng.sample(countries, 2)
        (creature, colour), (creature2, colour2) = rng.sample(creatures, 2)
        person = rng.choice(PEOPLE)
        lines = [LIFE_FORMS[0] if rng.random() < 0.5 else LIFE_FORMS[1]]
        lines += rng.sample(LIFE_FORMS[2:], 2)
        sentences = [
            form.format(
                person=person,
                city=city,
                country=country,
                city2=city2,
                country2=country2,
                creature=creature,
                colour=colour,
                creature2=creature2,
                colour2=colour2,
            )
            for form in lines
        ]
        rows.append({"text": " ".join(s[0].upper() + s[1:] for s in sentences)})
    # Most questions ask for a capital or a colour: repeating a made-up name from the question is what
    # the base must learn, and each name is read far less often than a number or a common word.
    named = [it for it in items if it.answer.startswith(("The capital of ", "A "))]
    questions = draw(rng, items, n_qa)
    for it in draw(rng, named, n_named) + questions:
        asker, answerer = rng.choice(ASKERS), rng.choice(ANSWERERS)
        text = rng.choice(QA_FORMS).format(
            q=it.question,
            a=it.answer,
            asker=asker,
            answerer=answerer,
            Asker=asker[0].upper() + asker[1:],
            Answerer=answerer[0].upper() + answerer[1:],
        )
        rows.append({"text": text})
    rng.shuffle(rows)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    rng = random.Random(SEED)
    items = all_items(rng)
    # Each file gets its own generator, so changing one file's recipe leaves the others byte-identical.
    files = {
        "chat.jsonl": lambda r: make_chat(r, items),
        "prompt_completion.jsonl": lambda r: make_prompt_completion(r, items),
        "preferences.jsonl": lambda r: make_preferences(r, items),
        "kto.jsonl": lambda r: make_kto(r, items),
        "prompts.jsonl": lambda r: make_prompts(r, items),
        "classification.jsonl": make_classification,
        "ranking.jsonl": lambda r: make_ranking(r, items),
        "text.jsonl": lambda r: make_text(r, items),
        "general.jsonl": make_general_text,
        "pretraining.jsonl": lambda r: make_pretraining(r, items),
    }
    for offset, (name, make) in enumerate(files.items(), start=1):
        rows = make(random.Random(SEED + offset))
        write_jsonl(args.out / name, rows)
        print(f"{name}: {len(rows)} rows, {(args.out / name).stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
