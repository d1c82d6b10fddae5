"""Does a supported sentence answer the question? Value binding, question echoes, answer type.

Verification (``rag.citations``) asks whether the cited abstract backs a sentence. That is not
enough: a sentence can copy an abstract and still be beside the point, or glue a number from
the abstract onto the wrong noun. These checks are pure functions of text:

* ``binding_failures``: each value in a sentence ("100K", "93.8%", "3.7B") must sit next to the
  same word in the source as in the sentence. "an image contains 100K objects" fails against
  "100K images where each image has an average of 21 objects", although both the number and
  the noun occur in the abstract.
* ``is_echo``: the sentence only restates the question ("Which three rules can a network
  implement?" answered with "A network can implement three rules").
* ``QuestionShape``: what kind of answer the question wants (a value, a yes/no, one part per
  paper), so that a quantity question without a value in its answer is not taken as answered.

>>> binding_failures("An image contains 100K objects.",
...                  "It holds 100K images where each image has an average of 21 objects.")
['value 100K is about images in the source, not objects']
>>> is_echo("Which rules can a wide network implement?", "A wide network can implement rules.")
True
>>> QuestionShape.of("How many objects does an image hold?").wants_value
True
>>> QuestionShape.of("What does it turn into, and what remedy do the authors propose?").parts
2
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .sentences import CITATION_MARKER, STOPWORDS, content_terms, named_terms
from .short_answers import is_yes_no_question

#: Words between a value and its noun that say nothing about what is counted.
_UNIT_WORDS = frozenset("% percent percentage percentages points point pp times x fold".split())
_WINDOW_BEFORE, _WINDOW_AFTER = 6, 4  # source words around a value that may name its noun
_PREFIX = 5  # "identification" and "identify" bind the same value
_VALUE = re.compile(r"^\d[\d,]*(?:\.\d+)?(?:[a-z]{1,2})?$")
_YEAR = re.compile(r"^(?:19|20)\d\d$")
#: Question words that sit next to any value and say nothing about what it measures.
_GENERIC = frozenset(w.rstrip("s")[:_PREFIX] for w in content_terms(
    "reach reaches achieve achieves obtain get gets report reports show shows gain gains improve "
    "improves yield yields attain attains score scores many much large big fast high low well "
    "number amount value method model approach paper authors use used"))

_QUANTITY = re.compile(
    r"\b(?:how (?:many|much|fast|large|long|big|often|small)|what (?:\w+[- ]){0,3}?(?:accuracy|"
    r"error|score|rate|percentage|fraction|share|size|number|speed-?up|bleu|f1|auroc|auc|"
    r"perplexity|mae|rmse|dice|count|resolution|ratio|temperature|dose)|up to (?:what|which) "
    r"(?:size|number|scale)|by (?:how much|what (?:factor|margin))|what (?:\w+ ){0,2}did \w+ "
    r"(?:reach|achieve|obtain|get))\b", re.I)
_MULTI = re.compile(
    r"\b(?:which (?:two |three )?(?:papers|works|studies|articles|methods|approaches)|"
    r"(?:two|both|several|different) (?:papers|works|studies|methods|approaches)|"
    r"each (?:paper|work|study|method|approach|of them)|respectively|compare[sd]?|comparison)\b",
    re.I)
_SECOND_PART = re.compile(
    r"(?:,|;|\band)\s+(?:then\s+)?(?:what|which|how|why|where|when|who|whom|whose|does|do|did|is|"
    r"are|was|were|can)\b|\?\s+\S", re.I)
_ECHO_NOVELTY = 0.25  # below this share of new content terms, a sentence echoes the question


def _words(text: str) -> list[str]:
    """Lowercased words and values with thousands separators and trailing %/x removed."""
    text = CITATION_MARKER.sub(" ", text).replace("\\%", "%").lower()
    out = []
    for raw in re.findall(r"[\w.,%×+\-]+|[;:()]", text):
        word = raw.strip(".,;:-+")
        if re.match(r"^\d", word):
            word = re.sub(r"(?<=\d),(?=\d{3})", "", word)
            if word.endswith(("%", "x", "×")) and word[:-1][-1:].isdigit():
                word, unit = word[:-1], "%" if word.endswith("%") else "x"
                out += [word, unit]
                word = ""
        out += [word] if word else []
        if raw[-1:] in ".,;:()" and (len(raw) > 1 or raw in ";:()"):
            out.append(",")  # a clause ends: the next word is no longer the value's noun
    return out


def _noun_after(words: list[str], i: int) -> str | None:
    """The content word right after the value at ``words[i]``, skipping unit words."""
    for word in words[i + 1:i + 3]:
        if word in _UNIT_WORDS:
            continue
        if word in STOPWORDS or not re.fullmatch(r"[a-z][a-z\-]+", word) or len(word) < 3:
            return None
        return word
    return None


def binding_failures(sentence: str, source_text: str) -> list[str]:
    """Values of ``sentence`` whose following noun is not near the same value in the source.

    A value with no noun after it ("reaches 3.65.", "in 2017") is not checked, nor are years
    and values inside names ("GPT-4", "ResNet-50"). Values absent from the source are left to
    the number check of ``rag.citations.hard_failures``.

    >>> binding_failures("It reaches 3.65 test error.", "A test error rate of 3.65 is reached.")
    []
    >>> binding_failures("It has 21 objects per image.", "100K images with 21 objects per image.")
    []
    """
    said, source = _words(sentence), _words(source_text)
    failures = []
    for i, value in enumerate(said):
        if not _VALUE.match(value) or _YEAR.match(value) or (noun := _noun_after(said, i)) is None:
            continue
        spots = [j for j, w in enumerate(source) if w == value]
        if spots and not any(_bound(said, i, noun, source, j) for j in spots):
            found = next((n for j in spots if (n := _noun_after(source, j))), None)
            about = f"is about {found} in the source" if found else "has no such noun in the source"
            failures.append(f"value {_display(sentence, value)} {about}, not {noun}")
    return failures


def _bound(said: list[str], i: int, noun: str, source: list[str], j: int) -> bool:
    """Whether the value at ``said[i]`` (followed by ``noun``) is about the same thing as the
    value at ``source[j]``: the source's own noun after it is among the sentence's next words,
    or, when the source has none ("a test error rate of 3.65."), the noun is near it."""
    if (theirs := _noun_after(source, j)) is not None:
        ours = {w[:_PREFIX] for w in said[i + 1:i + 4]}
        return theirs[:_PREFIX] in ours
    near = source[max(0, j - _WINDOW_BEFORE):j + _WINDOW_AFTER + 1]
    return noun[:_PREFIX] in {w[:_PREFIX] for w in near}


def _display(sentence: str, value: str) -> str:
    """``value`` as the sentence writes it ("100K", not "100k")."""
    m = re.search(re.escape(value), sentence.replace(",", ""), re.I)
    return m.group(0) if m else value


def _key(word: str) -> str:
    """How words are matched between question and sentence: "MLPs", "MLP" and "mlp" alike."""
    word = word.lower()
    return (word[:-1] if len(word) > 3 and word.endswith("s") else word)[:_PREFIX]


def asked_values(question: str, sentence: str) -> dict[str, set[str]]:
    """The values of ``sentence`` about what ``question`` asks: question term (stem prefix) →
    values written within a few words of it ("93% on CIFAR10", "a test error of 3.65").

    >>> asked_values("What accuracy on CIFAR10 does it reach?", "It reaches 93% accuracy on CIFAR10.")
    {'accur': {'93'}, 'cifar': {'93'}}
    """
    asked = {_key(t) for t in content_terms(question)} - _GENERIC
    words = _words(sentence)
    found: dict[str, set[str]] = {}
    for i, value in enumerate(words):
        if not _VALUE.match(value) or _YEAR.match(value):
            continue
        near = words[max(0, i - _WINDOW_BEFORE):i] + words[i + 1:i + _WINDOW_AFTER + 1]
        for word in near:
            if (key := _key(word)) in asked and not _VALUE.match(word):
                found.setdefault(key, set()).add(value)
    return found


def conflicting_values(question: str, a: str, b: str) -> bool:
    """Whether two sentences give different values for the same thing the question asks about:
    they put values next to the same two (or more) question terms, name
    the same of the question's names (a dataset, a model), and share no value.

    >>> q = "What CIFAR10 accuracy does an MLP reach?"
    >>> conflicting_values(q, "An MLP reaches 93% on CIFAR10.", "MLPs reach 12% on CIFAR10.")
    True
    >>> conflicting_values(q, "An MLP reaches 93% on CIFAR10.", "It gets 93% on CIFAR10 too.")
    False
    """
    mine, theirs = asked_values(question, a), asked_values(question, b)
    shared = mine.keys() & theirs.keys()
    if len(shared) < 2:
        return False
    names = {_key(t) for n in named_terms(question) for t in content_terms(n)}
    if names & {_key(t) for t in content_terms(a)} != names & {_key(t) for t in content_terms(b)}:
        return False
    return not (set().union(*mine.values()) & set().union(*theirs.values()))


def novelty(question: str, sentence: str) -> float:
    """Share of the sentence's content terms (and values) that the question does not contain.

    >>> novelty("What does MILAN label?", "MILAN labels neurons in images.")
    0.5
    """
    asked = set(content_terms(question)) | {w for w in _words(question) if _VALUE.match(w)}
    said = set(content_terms(sentence)) | {w for w in _words(sentence) if _VALUE.match(w)}
    return len(said - asked) / len(said) if said else 0.0


def is_echo(question: str, sentence: str) -> bool:
    """The sentence adds (almost) nothing to the question: it restates it."""
    return novelty(question, sentence) < _ECHO_NOVELTY


def has_value(sentence: str) -> bool:
    """Whether the sentence states a value other than a year.

    >>> has_value("It came out in 2017."), has_value("It is 1.05x faster.")
    (False, True)
    """
    return any(_VALUE.match(w) and not _YEAR.match(w) for w in _words(sentence))


@dataclass(frozen=True)
class QuestionShape:
    """What kind of answer a question asks for."""

    wants_value: bool  # a number: "how many", "what accuracy", "by how much"
    yes_no: bool  # "Does ...?", "Can ...?"
    multi: bool  # about several papers: "which papers", "each", "compare"
    parts: int = 1  # questions in one: "what X, and how Y?" has two

    @classmethod
    def of(cls, question: str) -> "QuestionShape":
        """The shape of ``question``, read from its wording.

        >>> QuestionShape.of("Which papers prune weights, and how does each do it?").multi
        True
        """
        q = " ".join(question.split())
        return cls(bool(_QUANTITY.search(q)), is_yes_no_question(q), bool(_MULTI.search(q)),
                   1 + len(_SECOND_PART.findall(q)))

    def fits(self, sentence: str) -> bool:
        """A value question needs a value in its answer; other shapes accept any sentence."""
        return has_value(sentence) if self.wants_value else True
