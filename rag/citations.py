"""Citation enforcement: keep only answer sentences that a numbered source supports.

``support_score`` rates a sentence against one abstract: (1) hard checks: every number and
name of the sentence must occur in the source (title and year count too), and each value must
be about the same thing there ("100K objects" fails against "100K images"), else 0; (2) lexical
``L``: share of the sentence's terms (stemmed content words, numbers) in the best source
sentence, or 0.9 x the share in the best pair (denominator at least 3: "It works." never
scores 1); (3) with ``embed``, ``S`` = best cosine and ``score = max(L, (L + S) / 2)``, so
embeddings lift a paraphrase, never sink a copy; (4) a negation ("not", "never", ...) on
one side only multiplies the score by 0.45. ``verify_answer`` keeps a sentence with each
source that passes the hard checks and scores ``>= min_support``; an optional judge is asked
only within ``JUDGE_BAND`` of ``min_support`` and the score becomes ``(score + p) / 2``.
Sentences of an abstract that instruct the reader ("always write this and cite [1]") never
support anything, and an answer sentence that is an instruction is no claim
(``rag.injection``).

>>> parse_citations("LSTMs help [1][3]. They are slow. [2]")
[('LSTMs help.', [1, 3]), ('They are slow.', [2])]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import Callable

from .answer_checks import binding_failures
from .evidence import Embed, cached_embed, cosine_to_first
from .injection import evidence_sentences, evidence_text, is_instruction
from .sentences import (
    PERCENT,
    SCALED,
    SCALES,
    CITATION_MARKER,
    canonical,
    content_terms,
    named_terms,
    numbers_in,
    quantities,
    split_sentences,
)
from .types import AnswerSentence, Citation, Source

Judge = Callable[[str, str], float]
JUDGE_BAND, PAIR_DISCOUNT, NEGATION_PENALTY = 0.15, 0.9, 0.45
MAX_RANGE = 20  # "[1-3]" expands; a wider range keeps only its two ends

_META = frozenset(content_terms("paper author study abstract source article text document context"))
_NEGATION = re.compile(r"\b(not|no|never|cannot|neither|nor|without|none)\b|n['’]t\b", re.I)
_HEDGE = re.compile(  # statements about the sources, not claims from them
    r"\b(?:sources?|abstracts?|context|papers?|text|information|documents?)\s+(?:\w+\s+){0,2}"
    r"(?:do(?:es)?|did)\s*(?:n['’]t|not)\s+(?:\w+\s+)?(?:say|state|mention|provide|contain|"
    r"specify|include|discuss|address|answer|give|report|indicate)|\bnone of the (?:sources|"
    r"abstracts|papers)\b|\bnot (?:explicitly |directly )?(?:mentioned|specified|stated|provided|"
    r"reported|discussed|given|addressed)(?:\s+(?:in|by)\s+(?:the|any|these)\b|\s*[.!]?$)"
    r"|^i (?:do not|don['’]t|cannot|can['’]t)\b|\b(?:cannot|can['’]t|unable to) (?:be )?"
    r"(?:determined?|answer(?:ed)?|found|find|say)\b|\bthere is no (?:information|mention|data)\b"
    r"|\b(?:insufficient|no) information\b", re.I)
_LEAD_IN = re.compile(  # "Based on the provided sources, " / "According to [2], " (marker gone)
    r"^(?:based on|according to|as (?:stated|shown|described|mentioned|reported|noted) in|from|in)"
    r"\s*(?:the\s+)?(?:(?:provided|given|above)\s+)?(?:(?:sources?|abstracts?|papers?|"
    r"context|information|text)(?:\s*\d+)?)?(?:\s+(?:provided|given|above))?\s*,\s*", re.I)
_SOURCE_MENTION = re.compile(r"\b(?:sources?|papers?|documents?|abstracts?|refs?)\s*#?\d+\b", re.I)
_NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                 "fourteen fifteen sixteen seventeen eighteen nineteen twenty").split()


@dataclass
class SupportResult:
    """How well one source supports one sentence."""
    score: float  # 0..1
    reasons: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)  # verbatim source sentences
    passed: bool = True  # hard checks (numbers, names) passed and the sentence is a claim


@dataclass
class Verified:
    """What ``verify_answer`` returns."""
    sentences: list[AnswerSentence]  # every sentence, with its verdict
    kept_text: str  # supported sentences only, each with its markers
    citations: list[Citation]
    removed: list[str]  # why citations or sentences went
    hedges: list[str] = field(default_factory=list)  # "the sources do not say ..." sentences


def clean_answer(text: str) -> str:
    """Strip echoed "Question:"/"Answer:" labels, a later new turn and a "Sources:" tail.

    >>> clean_answer("Question: Why?\\nAnswer: Because [1].\\nSources:\\n[1] A paper")
    'Because [1].'
    """
    t = re.sub(r"^\s*(?:question|query|q)\s*:.*?(?:\n|(?=\b(?:answer|a)\s*:)|$)", "",
               (text or "").replace("\r", ""), flags=re.I | re.S)
    t = re.sub(r"^\s*(?:answer|a|response)\s*:\s*", "", t, flags=re.I)
    t = re.split(r"(?:\n|(?<=[.!?])\s)\s*(?:question|query)\s*:", t, flags=re.I)[0]
    return re.split(r"(?:^|\n|(?<=[.!?])\s)\s*[*#]*\s*(?:sources?|references?|citations?|"
                    r"bibliography)\s*[*]*\s*:", t, flags=re.I)[0].strip()


def citations_removed(text: str) -> str:
    """``text`` without its citation markers.

    >>> citations_removed("Sit, Lie Down [1].")
    'Sit, Lie Down.'
    """
    return re.sub(r"\s+([.,;:!?])", r"\1", re.sub(r"\s{2,}", " ", CITATION_MARKER.sub(" ", text))).strip()


def marker_numbers(text: str) -> list[int]:
    """Source numbers cited by bracket markers, in order, without repeats.

    >>> marker_numbers("a [2] b [1-3] [Source 5] (Sources 6 and 7) (8)")
    [2, 1, 3, 5, 6, 7]
    """
    nums: list[int] = []
    for m in CITATION_MARKER.finditer(text):
        for a, b in re.findall(r"(\d+)(?:\s*[-–—]\s*(\d+))?", m.group(1) or m.group(2)):
            lo, hi = int(a), int(b or a)
            nums += [n for n in (range(lo, hi + 1) if 0 <= hi - lo <= MAX_RANGE else (lo, hi))
                     if n not in nums]
    return nums


def _tidy(sentence: str) -> str:
    """The sentence without markers, bullets, bold or meta lead-ins ("Based on the sources,")."""
    s = CITATION_MARKER.sub(" ", sentence).replace("**", "")
    s = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s+", "", s)
    s = re.sub(r"\s{2,}", " ", re.sub(r"\s+([.,;:!?])", r"\1", re.sub(r"\(\s*\)", " ", s)))
    s = _LEAD_IN.sub("", s.strip()).strip(" ,;")
    return s[:1].upper() + s[1:]


def parse_citations(text: str) -> list[tuple[str, list[int]]]:
    """Split an answer into (sentence without markers, cited numbers) pairs.

    Bracket markers only ([1], [1, 2], [1][2], [1-3], [Source 2], (Source 2); not "(1)").
    Markers after the period or alone at the end belong to the sentence before; a repeated
    sentence is merged into its first copy.

    >>> parse_citations("Answer: X uses Y [Source 2]. X uses Y. [1]\\n[3]")
    [('X uses Y.', [2, 1, 3])]
    """
    out: list[tuple[str, list[int]]] = []
    seen: dict[str, int] = {}
    for raw in split_sentences(clean_answer(text)):
        nums, body = marker_numbers(raw), _tidy(raw)
        key = re.sub(r"\W+", " ", body.lower()).strip()
        at = seen.get(key) if key else len(out) - 1  # a marker-only piece joins the one before
        if at is not None and at >= 0:
            out[at][1].extend(n for n in nums if n not in out[at][1])
        elif key:
            seen[key] = len(out)
            out.append((body, nums))
    return out


def is_hedge(sentence: str) -> bool:
    """A statement about the sources rather than a claim from them.

    >>> is_hedge("The sources do not say which dataset was used."), is_hedge("It uses CTC.")
    (True, False)
    """
    return bool(_HEDGE.search(sentence))


def hard_failures(sentence: str, source_text: str) -> list[str]:
    """Numbers and names of ``sentence`` missing from ``source_text`` ("3" may be spelled out,
    names may be plural; "Source 2" is ignored), and values bound to another noun in the
    source than in the sentence (``rag.answer_checks.binding_failures``).

    >>> hard_failures("GPT-4 gets 90.5 in 3 runs.", "GPT-4 gets 80.5 in three runs.")
    ['number 90.5 not in source']
    """
    s, have, values = _SOURCE_MENTION.sub(" ", sentence), numbers_in(source_text), quantities(source_text)

    def has_number(n: str) -> bool:
        words = [_NUMBER_WORDS[int(n)]] if n.isdigit() and int(n) <= 20 else []
        return (n in have or bool(_forms(n, s) & values)
                or any(re.search(rf"\b{w}\b", source_text, re.I) for w in words))

    def has_name(t: str) -> bool:
        if SCALED.fullmatch(t):  # "1.5M" stated as "1.5 million" or "1,500,000"
            return bool(quantities(t) & values)
        stems = {t, t[:-1]} if len(t) > 2 and t.endswith("s") else {t}
        return any(re.search(r"(?<![^\W_])" + re.escape(v) + r"(?:s|es)?(?![^\W_])", source_text,
                             re.I) for v in stems)

    return ([f"number {n} not in source" for n in sorted(numbers_in(s)) if not has_number(n)]
            + [f"name {t} not in source" for t in sorted(named_terms(s)) if not has_name(t)]
            + binding_failures(s, source_text))


def _forms(number: str, sentence: str) -> set[str]:
    """The values ``number`` (as ``numbers_in`` gives it) may stand for in ``sentence``: itself,
    a fraction when it is a percentage, the full value before a scale word ("1.5 million").

    >>> sorted(_forms("91.5", "It reaches 91.5% accuracy.")), sorted(_forms("2", "2 million pairs"))
    (['0.915', '91.5'], ['2', '2000000'])
    """
    value, raw = float(number), re.escape(number)
    forms = {canonical(value)}
    for m in re.finditer(rf"(?<![\d.,]){raw}(?![\d])", sentence.replace(",", "")):
        rest = sentence.replace(",", "")[m.end():]
        if PERCENT.match(rest):
            forms.add(canonical(value / 100))
        if scale := re.match(r"\s?(thousand|million|billion|trillion)\b", rest, re.I):
            forms.add(canonical(value * SCALES[scale.group(1).lower()]))
    return forms


def _terms(text: str) -> set[str]:
    return (set(content_terms(text)) - _META) | {"#" + canonical(float(n)) for n in numbers_in(text)}


def _source_terms(text: str) -> set[str]:
    """A source sentence's terms, with every form of its values ("2x" and "two-fold" alike)."""
    return _terms(text) | {"#" + q for q in quantities(text)}


def _lexical(terms: set[str], sents: list[str]) -> tuple[float, list[int]]:
    """Best coverage of ``terms`` by one source sentence or (discounted) a pair of them."""
    sets, denom = [_source_terms(s) for s in sents], max(len(terms), 3)
    singles = sorted(range(len(sets)), key=lambda i: (-len(terms & sets[i]), i))
    best, pick = len(terms & sets[singles[0]]) / denom, [singles[0]]
    for i, j in combinations(sorted(singles[:12]), 2):
        if (cov := PAIR_DISCOUNT * len(terms & (sets[i] | sets[j])) / denom) > best + 1e-9:
            best, pick = cov, sorted((i, j), key=lambda x: (-len(terms & sets[x]), x))
    return best, pick  # best-covering sentence first


def support_score(sentence: str, source_text: str, embed: Embed | None = None,
                  context: str = "") -> SupportResult:
    """How well an abstract supports ``sentence``; ``context`` (title, year) is for hard checks.

    >>> r = support_score("LR+GD reduces to the perceptron.", "LR+GD reduces to a perceptron.")
    >>> r.score, r.evidence
    (1.0, ['LR+GD reduces to a perceptron.'])
    >>> support_score("It gets 90.5%.", "It gets 80.5%.").reasons
    ['number 90.5 not in source']
    """
    sentence, sents = _tidy(sentence), evidence_sentences(source_text)
    if is_hedge(sentence):
        return SupportResult(0.0, ["no claim to support (hedge or meta statement)"], [], False)
    if is_instruction(sentence):
        return SupportResult(0.0, ["an instruction, not a claim"], [], False)
    if not sents:
        return SupportResult(0.0, ["empty source"], [], False)
    if failures := hard_failures(sentence, f"{' '.join(sents)}\n{context}"):
        return SupportResult(0.0, failures, [], False)
    if not (terms := _terms(sentence)):
        return SupportResult(0.0, ["no content words"], [], True)
    score, pick = _lexical(terms, sents)
    reasons = [f"lexical {score:.2f}"]
    if embed is not None and score < 1.0:  # a full copy cannot score higher: skip embedding
        sem = max(float((cos := cosine_to_first(embed, [sentence, *sents])).max()), 0.0)
        reasons.append(f"semantic {sem:.2f}")
        pick = pick if score > 0 else [int(cos.argmax())]
        score = max(score, (score + sem) / 2)
    evidence = [sents[i] for i in pick]
    if bool(_NEGATION.search(sentence)) != any(_NEGATION.search(e) for e in evidence):
        score *= NEGATION_PENALTY
        reasons.append("negation on one side only")
    return SupportResult(min(score, 1.0), reasons, evidence, True)


def _with_judge(r: SupportResult, sentence: str, evidence: str, judge: Judge | None,
                min_support: float) -> SupportResult:
    """Average a borderline score with the judge's probability."""
    if judge is None or not r.passed or abs(r.score - min_support) > JUDGE_BAND:
        return r
    try:
        p = min(max(float(judge(sentence, evidence)), 0.0), 1.0)
    except Exception as exc:  # a failing judge must not lose the answer  # noqa: BLE001
        return replace(r, reasons=[*r.reasons, f"judge failed: {exc}"])
    return replace(r, score=(r.score + p) / 2, reasons=[*r.reasons, f"judge {p:.2f}"])


def _with_markers(text: str, nums: list[int]) -> str:
    """``"X is Y."``, ``[2, 1]`` -> ``"X is Y [2][1]."`` (a period is added when missing)."""
    m = re.match(r"^(.*?)([.!?]+[\"'”’]?)?$", text, re.S)
    return f"{m.group(1).rstrip()} {''.join(f'[{n}]' for n in nums)}{m.group(2) or '.'}"


def verify_answer(text: str, sources: list[Source], min_support: float,
                  embed: Embed | None = None, judge: Judge | None = None) -> Verified:
    """Keep supported sentences, each with only the sources that support it.

    ``sources[i]`` is ``[i + 1]``; other numbers are removed, so are failing sources; a sentence
    left uncited gets the source that supports it best, or is dropped.

    >>> src = Source(1, "p1", "T", 1.0, "", "CTC is fast. It scores 91.2% accuracy.")
    >>> v = verify_answer("It scores 91.2% accuracy [4]. It scores 99% accuracy.", [src], 0.5)
    >>> v.kept_text, v.removed[0]
    ('It scores 91.2% accuracy [1].', 'citation [4] points to no source')
    """
    embed, cache, k = cached_embed(embed), {}, len(sources)

    def check(sentence: str, n: int) -> SupportResult:
        if (sentence, n) not in cache:
            s = sources[n - 1]
            meta = " ".join(str(s.metadata.get(x, "")) for x in ("published", "year"))
            text = s.abstract or s.text
            r = support_score(sentence, text, embed, f"{s.title} {evidence_text(s.text)} {meta}")
            ev = " ".join(r.evidence) or evidence_text(text)
            cache[sentence, n] = _with_judge(r, sentence, ev, judge, min_support)
        return cache[sentence, n]

    def ok(sentence: str, n: int) -> bool:
        return check(sentence, n).passed and check(sentence, n).score >= min_support

    def why(sentence: str, n: int) -> str:
        if not (r := check(sentence, n)).passed:
            return "; ".join(x.replace("in source", f"in [{n}]") for x in r.reasons)
        return f"support {r.score:.2f} from [{n}] below {min_support:.2f}"

    out, removed, hedges = [], [], []
    for sent, cited in parse_citations(text):
        if is_hedge(sent):
            hedges.append(sent)
            removed.append(f"sentence dropped (no claim to cite): {sent}")
            out.append(AnswerSentence(sent, [], 0.0, False))
            continue
        removed += [f"citation [{n}] points to no source" for n in cited if not 1 <= n <= k]
        valid = [n for n in cited if 1 <= n <= k]
        if kept := [n for n in valid if ok(sent, n)]:
            removed += [f"citation [{n}] removed: {why(sent, n)}" for n in valid if n not in kept]
        else:  # move the sentence to the source that supports it best, if any does
            others = sorted((n for n in range(1, k + 1) if n not in valid),
                            key=lambda n: (not ok(sent, n), -check(sent, n).score, n))
            if others and ok(sent, others[0]):
                kept = others[:1]
                removed += [f"citation [{n}] replaced by [{kept[0]}]: {why(sent, n)}"
                            for n in valid]
            elif valid:
                removed.append(f"sentence dropped: {why(sent, valid[0])}")
            else:
                best = why(sent, others[0]) if others else "there are no sources"
                removed.append(f"sentence dropped: no source supports it ({best})")
        support = max((check(sent, n).score for n in kept or valid or range(1, k + 1)), default=0.0)
        out.append(AnswerSentence(sent, kept, support, bool(kept),
                                  {n: check(sent, n).evidence for n in kept}))
    kept_text = " ".join(_with_markers(s.text, s.citations) for s in out if s.supported)
    return Verified(out, kept_text, _citations(out, sources), removed, hedges)


def _citations(sentences: list[AnswerSentence], sources: list[Source]) -> list[Citation]:
    """One ``Citation`` per kept number, in order of first use, best evidence first."""
    evidence: dict[int, dict[str, None]] = {}
    for s in sentences:
        for n in s.citations:
            evidence.setdefault(n, {}).update(dict.fromkeys(s.evidence.get(n, [])))
    return [Citation(n, (src := sources[n - 1]).paper_id, src.title, list(ev))
            for n, ev in evidence.items()]
