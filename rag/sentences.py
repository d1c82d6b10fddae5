"""Sentences and terms of scientific English: the units that evidence and citations use."""

from __future__ import annotations

import re

import Stemmer

_STEMMER = Stemmer.Stemmer("english")

#: ``[2]``, ``[1, 3]``, ``[1-3]``, ``[Source 2]``, ``(Source 2)``; not "(1)", which enumerates.
CITATION_MARKER = re.compile(
    r"\[\s*(?:(?:sources?|refs?|papers?|docs?|documents?)\s*)?#?\s*"
    r"(\d+(?:\s*(?:,|;|-|–|—|and|&)\s*(?:sources?\s*)?\d+)*)\s*\]"
    r"|\(\s*(?:sources?|refs?|papers?)\s*#?\s*(\d+(?:\s*(?:,|;|-|–|and|&)\s*\d+)*)\s*\)", re.I)
# Never end a sentence; the second set only before a digit ("Sec. 3", "No. 5").
_ABBREV = frozenset("e.g i.e al vs cf fig figs eq eqs eqn approx resp viz w.r.t incl esp".split())
_ABBREV_DIGIT = frozenset("no nos sec sect tab ref refs vol pp p ch".split())
_END = re.compile(r"[.!?]+[\"'”’)\]]*(?:\s*(?:%s))*(?=\s|$)" % CITATION_MARKER.pattern, re.I)
_HARD_BREAK = re.compile(r"\n[ \t]*\n|\n(?=[ \t]*(?:[-*•]|\d+[.)])\s)")
_WORD_BEFORE = re.compile(r"([^\W\d_][^\W_]*(?:\.[^\W\d_]+)*)$")
_NUMBER = re.compile(r"(?<![\w.,])(?<![^\W\d_][-_/])(\d{1,3}(?:,\d{3})+(?!\d)|\d+(?:\.\d+)?(?![.,]\d))"
                     r"(?:st|nd|rd|th)?(?:\s?%|[x×])?(?!\w)")
_TOKEN = re.compile(r"[^\W_](?:[^\W_]|[+\-_./'’](?=[^\W_]))*\+*")
_NOT_NAMES = frozenset("source sources paper papers abstract abstracts answer question figure "
                       "table section note january february march april may june july august "
                       "september october november december".split())
_OPENERS = r"[\s\-*•\"'“(\[]*"
_AFTER_END = re.compile(r"[.!?:;]['\"”’)\]]*" + _OPENERS + "$")
STOPWORDS = frozenset(
    "a about above after again against all also am an and any are as at be because been before "
    "being below between both but by can could did do does doing don down during each few for "
    "from further had has have having here his how however i if in into is it its itself just me "
    "more most my no nor not now of off on once only or other our out over own same should so "
    "some such than that the their them then there these they this those through to too under "
    "until up very was we were what when where which while who whom why will with would you your "
    "via thus therefore hence whether within without upon among across per etc eg ie et al may "
    "might must shall us one ones moreover furthermore finally although unlike despite".split())


def _is_boundary(text: str, m: re.Match) -> bool:
    """Whether the punctuation matched by ``_END`` really ends a sentence."""
    nxt = text[m.end():].lstrip()[:1]
    if nxt.islower() or text[m.start()] != ".":
        return not nxt.islower()
    word = (w := _WORD_BEFORE.search(text[max(0, m.start() - 30):m.start()])) and w.group(1).lower()
    if word in _ABBREV or (word in _ABBREV_DIGIT and nxt.isdigit()):
        return False
    if not (w and len(last := w.group(1).split(".")[-1]) == 1 and last.isupper()):
        return True  # below: "by J. Smith", "J. R. Smith" (initials) vs "it is A. The ..."
    prev = re.search(r"(\S*)\s+\S*$", text[max(0, m.start() - 40):m.start()])
    follow = re.match(r"\s*([^\W\d_]+)", text[m.end():])
    name_like = ("." in w.group(1) or not prev or prev.group(1)[:1].isupper()
                 or prev.group(1).endswith((",", ".")) or prev.group(1) in ("by", "and"))
    return not (name_like and follow and follow.group(1).lower() not in STOPWORDS)


def split_sentences(text: str) -> list[str]:
    """Stripped sentences covering ``text`` up to whitespace; markers after a period stay with it.

    >>> split_sentences("Smith et al. found it (vs. 2.5). Why? See [1]. Done")
    ['Smith et al. found it (vs. 2.5).', 'Why?', 'See [1].', 'Done']
    """
    cuts = {m.end() for m in _END.finditer(text) if _is_boundary(text, m)}
    bounds = [0, *sorted(cuts | {m.start() for m in _HARD_BREAK.finditer(text)}), len(text)]
    return [s for a, b in zip(bounds, bounds[1:]) if (s := text[a:b].strip())]


def content_terms(text: str) -> list[str]:
    """Lowercased, stemmed content words (no stopwords, bare numbers or 1-letter words).

    >>> content_terms("The networks were trained on 3 datasets")
    ['network', 'train', 'dataset']
    """
    words = [w for w in re.findall(r"[^\W_]+", text.lower())
             if len(w) > 1 and not w.isdigit() and w not in STOPWORDS]
    return _STEMMER.stemWords(words)


def numbers_in(text: str) -> set[str]:
    """Numbers as written, normalised: "1,000"→"1000", "95%"→"95", "3x"/"3×"→"3", "2nd"→"2"

    Years count; citation markers and numbers inside names ("GPT-4", "W4A4", "7B") don't.

    >>> sorted(numbers_in("GPT-4 got 28.4 BLEU, 3x faster on 1,000 pairs in 2017 [2]"))
    ['1000', '2017', '28.4', '3']
    """
    return {m.group(1).replace(",", "") for m in _NUMBER.finditer(CITATION_MARKER.sub(" ", text))}


_WORD_VALUES = {w: float(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty".split())}
_WORD_VALUES.update({w: float(10 * i) for i, w in enumerate(
    "thirty forty fifty sixty seventy eighty ninety".split(), start=3)})
_WORD_VALUES.update({"hundred": 100.0, "thousand": 1e3, "twice": 2.0, "double": 2.0, "doubles": 2.0,
                     "doubled": 2.0, "doubling": 2.0, "triple": 3.0, "tripled": 3.0, "triples": 3.0,
                     "tripling": 3.0, "thrice": 3.0, "half": 0.5, "halves": 0.5, "halved": 0.5})
SCALES = {"thousand": 1e3, "k": 1e3, "million": 1e6, "m": 1e6, "mn": 1e6, "billion": 1e9, "b": 1e9,
           "bn": 1e9, "trillion": 1e12, "t": 1e12}
PERCENT = re.compile(r"\s?(?:%|percent\b|per cent\b|pct\b)", re.I)
SCALED = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s?(thousand|million|billion|trillion|mn|bn|[kKMBT])(?![^\W_])")
_VALUE_WORD = re.compile(r"\b(%s)(?:[- ]?(?:fold|times))?\b|\b(%s)fold\b" % (
    "|".join(_WORD_VALUES), "|".join(w for w in _WORD_VALUES if w in "two three four five six seven "
                                     "eight nine ten hundred thousand".split())), re.I)


def canonical(value: float) -> str:
    """A number as one string whatever its spelling: ``canonical(91.50) == "91.5"``."""
    return f"{value:.10g}"


def quantities(text: str) -> set[str]:
    """Every value ``text`` states, canonical (``canonical``) and in each form it may be
    restated in: "91.5%" and "91.5 percent" as 91.5 and 0.915, "1.5 million" and "1.5M" as
    1.5 and 1500000, "1,000" as 1000, "two-fold"/"twice"/"2x" as 2, "ten" as 10. Citation
    markers are no values.

    >>> sorted(quantities("91.5 percent of 1.5M images, two-fold faster [2]"))
    ['0.915', '1.5', '1500000', '2', '91.5']
    """
    text = CITATION_MARKER.sub(" ", text)
    out: set[str] = set()
    for m in _NUMBER.finditer(text):
        value = float(m.group(1).replace(",", ""))
        out.add(canonical(value))
        if m.group(0).rstrip().endswith("%") or PERCENT.match(text, m.end(1)):
            out.add(canonical(value / 100))
    for m in SCALED.finditer(text):  # "7B" is 7e9, never a 7; "7 billion" is both
        value, unit = float(m.group(1)), m.group(2).lower()
        out |= {canonical(value * SCALES[unit])} | ({canonical(value)} if len(unit) > 2 else set())
    for m in _VALUE_WORD.finditer(text):
        value = _WORD_VALUES[(m.group(1) or m.group(2)).lower()]
        out.add(canonical(value))
        if PERCENT.match(text, m.end()):
            out.add(canonical(value / 100))
    return out


def _is_named(part: str, initial: bool) -> bool:
    """Acronym, CamelCase, digits or "+" inside, or capitalised but not sentence-initial."""
    if not re.search(r"[^\W\d_]", part) or re.fullmatch(r"\d+(?:\.\d+)?(?:st|nd|rd|th|x)", part):
        return False
    if re.search(r"\d|\+|[a-z][A-Z]", part) or sum(c.isupper() for c in part) >= 2:
        return True
    return part[0].isupper() and len(part) > 1 and not initial and part.lower() not in _NOT_NAMES


def named_terms(text: str) -> set[str]:
    """Method/model/dataset names: acronyms, CamelCase, words with digits or "+", capitalised
    words not starting a sentence. A hyphen part stays joined only if it holds a digit.

    >>> sorted(named_terms("Transformers beat LSTM and ResNet-50 on WMT 2014 with LR+GD in Paris."))
    ['LR+GD', 'LSTM', 'Paris', 'ResNet-50', 'WMT']
    """
    found: set[str] = set()
    for m in _TOKEN.finditer(text := CITATION_MARKER.sub(" ", text)):
        window = text[max(0, m.start() - 12):m.start()]
        initial = bool(_AFTER_END.search(window)
                       or (m.start() <= 12 and re.fullmatch(_OPENERS, window)))
        parts: list[str] = []
        for piece in re.sub(r"['’]s$", "", m.group(0)).split("-"):
            if parts and piece and any(c.isdigit() for c in piece):
                parts[-1] += "-" + piece
            else:
                parts.append(piece)
        found |= {p for i, p in enumerate(parts) if p and _is_named(p, initial and i == 0)}
    return found
