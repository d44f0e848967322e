"""A synthetic name-anchored reranking check: does a head set rank by who a question names?

Each item has ~20 short passages about distinct made-up people: one template fact plus a filler
sentence ("Silas Thorne keeps a grey parrot. Nobody in the village found this surprising."). The
question names one person and asks for the fact's relation ("What pet does Silas Thorne keep?");
several passages share that relation, so only the name decides. A working QR head set puts the named
person's passage first. Generation is deterministic: every random choice comes from
``random.Random(f"{seed}:{index}")`` over fixed, ordered lists (never a set), so item i is the same
regardless of how many items are drawn or of hash randomisation.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

FIRST = ("Silas", "Mara", "Ada", "Felix", "Iris", "Jonah", "Leona", "Otto", "Priya", "Rufus", "Selma", "Tobias",
         "Una", "Victor", "Wren", "Yara", "Basil", "Cora", "Dorian", "Elsa", "Gideon", "Hazel", "Ivo", "Juno",
         "Kasper", "Lydia", "Magnus", "Nadia", "Orla", "Percy", "Quentin", "Rosa", "Soren", "Thea", "Ulric",
         "Vera", "Walter", "Xenia", "Yusuf", "Zelda")
LAST = ("Thorne", "Quill", "Brook", "Marsh", "Holloway", "Fairweather", "Ashdown", "Blackwood", "Crane",
        "Dunmore", "Everly", "Finch", "Greaves", "Hartley", "Ingram", "Jessop", "Kettering", "Lockwood",
        "Merriman", "Northcott", "Osgood", "Pemberton", "Radcliffe", "Stanhope")
RELATIONS = (
    ("pet", "{name} keeps {value} as a pet.", "What pet does {name} keep?",
     ("a grey parrot", "an old tortoise", "a white ferret", "a lop-eared rabbit", "a tabby cat", "a goldfish",
      "a black terrier", "a canary")),
    ("birthplace", "{name} was born in {value}.", "Where was {name} born?",
     ("Lisbon", "a lighthouse on Skye", "Odessa", "a mining town in Wales", "Quebec", "Naples", "Bergen",
      "a farm near Utrecht")),
    ("job", "{name} works as {value}.", "What does {name} do for a living?",
     ("a clockmaker", "a ferry pilot", "a botanist", "a bookbinder", "a lighthouse keeper", "a glassblower",
      "a cartographer", "a beekeeper")),
    ("instrument", "{name} plays {value} every Sunday evening.", "Which instrument does {name} play?",
     ("the cello", "the harp", "the oboe", "the accordion", "the trumpet", "the bagpipes", "the banjo",
      "the harpsichord")),
    ("fear", "{name} is terrified of {value}.", "What is {name} afraid of?",
     ("thunderstorms", "deep water", "moths", "tall bridges", "crowded trains", "the dark", "wasps",
      "church bells")),
    ("voyage", "{name} once sailed to {value}.", "Where did {name} once sail to?",
     ("Iceland", "the Azores", "Zanzibar", "Tasmania", "the Faroe Islands", "Madagascar", "Sri Lanka",
      "the Canary Islands")),
    ("garden", "{name} grows {value} in the back garden.", "What does {name} grow in the garden?",
     ("blue roses", "giant pumpkins", "wild garlic", "apricot trees", "sunflowers", "rare orchids",
      "runner beans", "lavender")),
    ("novel", "{name} is writing a novel about {value}.", "What is {name}'s novel about?",
     ("a lost whaling ship", "a haunted library", "two rival chefs", "a desert railway", "a circus fire",
      "a stolen violin", "an island doctor", "a forgotten queen")),
)
FILLERS = ("Nobody in the village found this surprising.", "The neighbours talk about it often.",
           "It has been that way for many years.", "Few people outside the family know it.",
           "The local paper once wrote a short piece about it.", "It started almost by accident.",
           "Friends say it suits the family well.", "Visitors usually hear about it on the first day.")


@dataclass
class NameItem:
    question: str
    passages: list[str]
    answer: int  # index of the named person's passage


def name_anchored_items(n: int = 40, passages: int = 20, seed: int = 1234) -> list[NameItem]:
    items = []
    for index in range(n):
        rng = random.Random(f"{seed}:{index}")
        names = rng.sample([f"{f} {l}" for f in FIRST for l in LAST], passages)
        # Few relation types per item, so the relation alone never identifies the passage.
        kinds = rng.sample(range(len(RELATIONS)), 3)
        texts = []
        rel_of = []
        for name in names:
            k = rng.choice(kinds)
            _, fact, _, values = RELATIONS[k]
            texts.append(f"{fact.format(name=name, value=rng.choice(values))} {rng.choice(FILLERS)}")
            rel_of.append(k)
        answer = rng.randrange(passages)
        question = RELATIONS[rel_of[answer]][2].format(name=names[answer])
        items.append(NameItem(question=question, passages=texts, answer=answer))
    return items
