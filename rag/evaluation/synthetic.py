"""Write a synthetic abstract dump in the arXiv metadata format (one JSON object per line).

    python -m rag.evaluation.synthetic --n 100000 --out synthetic-100k.jsonl [--seed 0]

Each line has ``id`` ("2101.00001": year and month of its date, then a counter),
``submitter``, ``authors`` ("A. Name, B. Name and C. Name"), ``title``, ``comments``,
``journal-ref``, ``doi``, ``categories`` ("cs.LG stat.ML", primary first), ``abstract``
(indented and wrapped like arXiv's) and ``update_date`` ("YYYY-MM-DD", 2015 to 2024).
Titles and abstracts recombine words and sentences of the bundled seed abstracts
(``data/seeds``), so they read like the real thing and exercise the real chunker.

Abstracts are kept short on purpose, 2 or 3 sentences and 40 to 60 words (one chunk
each): embedding 100,000 of them with the bundled MiniLM on a 2-core CPU takes about an
hour instead of several, while still being real text. The same ``--n`` and ``--seed``
always give the same file, byte for byte. Lines are written as they are made (memory stays
flat; a million lines take well under a minute).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

MIN_WORDS, MAX_WORDS = 40, 60
CATEGORIES = (
    "cs.LG", "cs.CL", "cs.CV", "cs.AI", "cs.IR", "cs.NE", "cs.RO", "cs.CR", "cs.DC", "cs.SE",
    "stat.ML", "stat.ME", "math.OC", "math.ST", "eess.AS", "eess.IV", "eess.SP", "q-bio.NC",
    "physics.comp-ph", "quant-ph",
)
SURNAMES = (
    "Abbott", "Alvarez", "Bauer", "Bianchi", "Chen", "Costa", "Dubois", "Eriksen", "Fischer",
    "Garcia", "Gupta", "Haddad", "Hansen", "Ito", "Ivanova", "Jensen", "Kim", "Kowalski",
    "Kumar", "Larsen", "Li", "Lopez", "Martin", "Meyer", "Moreau", "Nakamura", "Novak",
    "Okafor", "Olsen", "Park", "Petrov", "Quinn", "Rossi", "Sato", "Schmidt", "Silva", "Singh",
    "Smith", "Suzuki", "Tanaka", "Torres", "Umarov", "Varga", "Wagner", "Wang", "Weber",
    "Wu", "Xu", "Yamamoto", "Yilmaz", "Zhang", "Zhou",
)
INITIALS = "ABCDEFGHIJKLMNOPRSTVWYZ"
FIRST_DAY, DAYS = date(2015, 1, 1), (date(2024, 12, 31) - date(2015, 1, 1)).days + 1


def seed_material() -> tuple[list[str], list[str]]:
    """Sentences (8 to 30 words, one of them complete) and title words of the seed corpus."""
    from ..config import SEEDS_DIR
    from ..corpus import load_corpus
    from ..sentences import split_sentences

    papers = load_corpus([SEEDS_DIR]).papers
    sentences = sorted({s for p in papers for s in split_sentences(p.abstract)
                        if 8 <= len(s.split()) <= 30 and s[-1] in ".!?"})
    words = sorted({w for p in papers for w in re.findall(r"[A-Za-z][A-Za-z-]{3,}", p.title)})
    return sentences, words


def abstract_from(rng: random.Random, sentences: list[str]) -> str:
    """2 or 3 sentences, 40 to 60 words together."""
    while True:
        picked = rng.sample(sentences, rng.choice((2, 3)))
        if MIN_WORDS <= sum(len(s.split()) for s in picked) <= MAX_WORDS:
            return " ".join(picked)


def wrapped(text: str, width: int = 78) -> str:
    """Lines of at most ``width`` characters, broken between words (like arXiv's)."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join([*lines, line])


def records(n: int, seed: int) -> Iterator[dict]:
    """The ``n`` records, in order (deterministic for a seed)."""
    rng = random.Random(seed)
    sentences, words = seed_material()
    per_month: dict[tuple[int, int], int] = {}  # at most 120 months: flat memory
    for _ in range(n):
        day = FIRST_DAY + timedelta(days=rng.randrange(DAYS))
        month = (day.year % 100, day.month)
        per_month[month] = per_month.get(month, 0) + 1
        names = [f"{rng.choice(INITIALS)}. {rng.choice(SURNAMES)}"
                 for _ in range(rng.choice((1, 2, 2, 3, 3, 4, 5)))]
        names = list(dict.fromkeys(names))
        authors = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        title = " ".join(rng.sample(words, rng.randint(4, 9)))
        text = abstract_from(rng, sentences)
        yield {
            "id": f"{month[0]:02d}{month[1]:02d}.{per_month[month]:05d}",
            "submitter": names[0],
            "authors": authors,
            "title": title[0].upper() + title[1:],
            "comments": None,
            "journal-ref": None,
            "doi": None,
            "categories": " ".join(rng.sample(CATEGORIES, rng.choice((1, 1, 2, 2, 3)))),
            "abstract": "  " + wrapped(text) + "\n",
            "update_date": day.isoformat(),
        }


def write_dump(n: int, out: Path, seed: int = 0) -> int:
    """Write ``n`` records to ``out`` (one JSON object per line); returns the byte size."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", buffering=1 << 20) as fh:
        for record in records(n, seed):
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return out.stat().st_size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, required=True, help="number of papers")
    parser.add_argument("--out", type=Path, required=True, help="the .jsonl file to write")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    start = time.perf_counter()
    size = write_dump(args.n, args.out, args.seed)
    print(f"wrote {args.n:,} papers ({size / 2**20:.1f} MiB) to {args.out} "
          f"in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
