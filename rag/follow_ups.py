"""Follow-up questions made standalone: which questions lean on the conversation, what the
conversation is about, and how that subject is put back into the question.

A follow-up is rewritten into one question about *its own* request, with the conversation's
subject (the paper, method, model or dataset the previous question was about) put where the
follow-up only pointed at it:

* a pronoun or vague reference ("it", "they", "its", "the model", "this method", "the
  authors") is replaced by the subject;
* a follow-up that names nothing ("and how long did the search take?", "tell me more") gets
  the subject added ("... for the neural architecture search method on CIFAR-10?");
* an elliptical one ("and on ImageNet?", "what about SMASH?") repeats the previous question
  with the new condition or the new subject in its place;
* a question that stands on its own is returned unchanged, even after "and" ("and what is
  the lottery ticket hypothesis?").

The rules are deterministic and instant (no model: paraphrasing with a small model is slow on
a CPU and drifts off topic). A question is a follow-up when it leans on the conversation: a
pronoun or reference with nothing in the question before it to point at ("What is Mamba and
how fast is it?" stands alone, and so does the "it" of "is it possible to ..."), a leading
"and"/"also" before a question that names no subject of its own or before a fragment, "what
about ...", a bare prepositional phrase ("on ImageNet?"), or a question without a single
subject word ("How long did the search take?"). The subject of a question is, in order: a
quoted title, "the X paper", the noun phrase after "what is", the thing a "which X" question
asks for when X is the subject of its verb ("Which architecture outputs positions ...?" ->
"the architecture that outputs positions ..."), the noun phrase between the auxiliary and the
verb ("what test error does *the NAS method* reach"), else the first name in it; a name it
attaches with a preposition ("on CIFAR-10") travels with it. A bare name after "what about"
replaces the subject ("what about SMASH?"), unless it is a dataset or of the same family as
that name ("what about CIFAR-100?"), which replaces the condition.

>>> topic = subject_of("What is Mamba?")
>>> topic.subject, rewrite("and how fast is it?", topic)[0]
('Mamba', 'How fast is Mamba?')
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .sentences import STOPWORDS


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_WH = _words("what which who whom whose when where why how")
_AUX_DO = _words("do does did can could will would should shall may might must doesn't don't "
                 "didn't can't cannot couldn't won't wouldn't shouldn't")
_AUX_BE = _words("is are was were be been being am isn't aren't wasn't weren't")
_AUX = _AUX_DO | _AUX_BE | _words("has have had hasn't haven't hadn't")
_PREP = _words("on in for with at by from to of about over under against than into onto across "
               "without per via between among during through beyond within versus vs after "
               "before like using compared toward towards upon around")
_CONJ = _words("and or but nor so then plus also")
_DEF = _words("the this that these those")
_DEMONSTRATIVES = _words("this that these those")
_INDEF = _words("a an each every any some one another")
_POSSESSIVES = {"its": "it", "their": "they", "his": "he", "her": "she"}
_PRONOUNS = {"it": "it", "itself": "it", "they": "they", "them": "they", "themselves": "they",
             "he": "they", "him": "they", "she": "they"}
# Nouns that, after "the"/"this", point at the thing being discussed ("the model").
_REF_NOUNS = _words(
    "paper papers article work study method methods model models approach approaches technique "
    "techniques architecture architectures network networks net nets system systems framework "
    "frameworks algorithm algorithms scheme module mechanism procedure dataset benchmark "
    "authors author researchers team")
_REF_ADJ = _words("proposed new same above original presented described suggested introduced "
                  "mentioned latter former previous earlier aforementioned said")
# Nouns a follow-up asks *about* but which name no subject of their own.
_GENERIC = _REF_NOUNS | _words(
    "accuracy error errors rate rates performance speed speedup time times cost costs size sizes "
    "parameters parameter params results result data benchmarks task tasks problem problems "
    "experiment experiments limitation limitations advantage advantages disadvantage "
    "disadvantages drawback drawbacks benefit benefits contribution contributions ideas search "
    "training inference memory baseline baselines comparison score scores metric metrics "
    "evaluation way ways thing things kind kinds type types difference differences one ones "
    "version versions part parts step steps detail details example examples application "
    "applications use uses usage purpose goal goals aim motivation reason reasons outcome "
    "outcomes finding findings conclusion conclusions code implementation setting settings "
    "setup hyperparameters input inputs output outputs loss losses precision recall latency "
    "throughput runtime complexity efficiency scalability robustness generalization generalisation "
    "scaling scale depth width number numbers amount percent percentage improvement "
    "improvements gain gains reduction increase decrease value values answer answers question "
    "questions claim claims point points source sources abstract information info summary "
    "overview explanation lot bit state art idea proposal design strategy solution variant variants "
    "layer layers unit units function dataset datasets")
_VERBS = _words(
    "use uses used reach reaches reached achieve achieves achieved get gets got obtain obtains "
    "obtained perform performs performed work works worked scale scales scaled compare "
    "compares compared handle handles handled need needs needed require requires required learn "
    "learns learned learnt solve solves solved generalize generalizes generalise generalises "
    "improve improves improved train trains trained propose proposes proposed introduce "
    "introduces introduced show shows showed shown find finds found report reports reported "
    "have has had make makes made take takes took taken last lasts lasted outperform "
    "outperforms outperformed beat beats predict predicts predicted measure measures measured "
    "evaluate evaluates evaluated test tests tested compute computes computed produce produces "
    "produced help helps helped mean means meant address addresses addressed capture captures "
    "give gives gave given reduce reduces reduced increase increases increased apply applies "
    "applied rely relies relied depend depends combine combines combined replace replaces "
    "replaced differ differs relate relates related affect affects cost run runs ran behave "
    "behaves converge converges enable enables enabled allow allows allowed store stores stored "
    "generate generates generated explain explains explained describe describes described "
    "summarize summarise tell tells told list lists define defines defined mention mentions "
    "say says said do does did go goes went come comes came try tries tried see sees saw look "
    "looks know knows known think call calls called name named happen happens happened fail "
    "fails failed matter matters support supports supported deal deals cope stand stands exist "
    "exists contain contains contained include includes included involve involves involved "
    "match matches matched represent represents encode encodes decode decodes pass "
    "passes passed deploy deploys deployed design designs designed build builds built choose "
    "chooses chose select selects selected regularize regularizes regularise keep keeps kept "
    "lead leads led cause causes caused remember remembers memorize memorizes forget forgets "
    "fit fits suffer suffers rank ranks detect detects identify identifies prevent "
    "prevents mitigate mitigates avoid avoids become becomes became remain remains stay "
    "stays count counts accelerate accelerates turn turns emerge emerges "
    "collect collects collected release releases released extend extends extended merge "
    "merges merged connect connects connected optimize optimizes optimise "
    "optimises decrease decreases save saves saved done written chosen seen gone put set write "
    "writes wrote begin began grow grew hold held know knew lose lost send sent spend spent "
    "teach taught understand understood win won")
# After "the model": it is described there and then, not a reference ("the model of ...").
_DESCRIBED = _words("of that which who whose where called named known for from by with in behind like")
_PAPER_NOUNS = _words("paper papers article articles work works study studies")
_ADJ = _words(
    "faster slower better worse larger smaller bigger higher lower deeper wider cheaper "
    "stronger weaker easier harder longer shorter more less good bad useful effective "
    "efficient able possible robust accurate fast slow novel different similar compatible "
    "suitable available sensitive stable necessary important competitive scalable expensive "
    "cheap hard easy true false best worst well open free")
_IMPERATIVE = _words("explain describe summarize summarise tell list give show compare define "
                     "name elaborate expand clarify outline detail discuss continue go")
_FILLER = _words("me please more else exactly really also too again further")
_MORE = _words("about more details detail please info information go on continue elaborate "
               "further explain expand ok okay now well")
_NOT_CONTENT = (STOPWORDS | _WH | _AUX | _PREP | _GENERIC | _VERBS | _ADJ | _IMPERATIVE | _FILLER
                | _REF_ADJ | _words("many much few several first second third last next other "
                                    "same whole main key new long far often big large small high low deep "
                                    "wide old recent early late usually typically"))
_ED_NOUNS = _words("speed seed embed need feed bed red")
# Datasets and benchmarks: a bare name after "what about" that changes the condition
# ("on CIFAR-10" -> "on ImageNet"), not the subject.
_DATASETS = _words(
    "imagenet cifar mnist svhn coco ptb penn treebank wikitext enwik8 glue superglue squad wmt stl "
    "omniglot atari mujoco uci movielens librispeech timit cityscapes voc celeba lsun tinyimagenet "
    "imagenet32x32 modelnet10 text8 lambada hellaswag mmlu gsm8k humaneval")
_EXPLETIVE = re.compile(  # "is it possible to ...", "it is known that ...", "does it take to ..."
    r"\b(?:(?:is|was|isn't|wasn't|would|will)\s+it\s+(?:be\s+)?|it\s+(?:is|was|'s|’s)\s+"
    r"|makes?\s+it\s+)(?:possible|true|necessary|feasible|hard|harder|easy|easier|difficult|"
    r"better|worse|worth|important|known|common|enough|safe|useful|beneficial|fair|correct|"
    r"reasonable|likely|clear|unclear)\s+(?:to|that|if|whether|for)\b|\bit\s+takes?\s+to\b", re.I)
_MARKER = re.compile(
    r"^(?:(?:and|but|also|so|then|plus|ok|okay|now|well)\b[\s,]*)*"
    r"(?:(?:what|how)\s+about|as\s+for|what\s+of|same\s+(?:for|with|on|in))\b[\s,:]*"
    r"|^(?:(?:and|but|also|so|then|plus|ok|okay|now|well)\b[\s,]*)+", re.I)
_TOKEN = re.compile(r"[^\W_](?:[^\W_]|[+\-_./'’](?=[^\W_]))*\+*")


@dataclass(frozen=True)
class _Tok:
    text: str  # as written, without a possessive "'s"
    low: str
    start: int
    end: int  # after the possessive "'s" if any
    poss: bool  # "model's", "Titans'"
    named: bool  # a name: acronym, CamelCase, digits inside, or capitalised
    content: bool  # a word that names a subject (not a function, request or common verb word)


def _tokens(text: str) -> list[_Tok]:
    toks = []
    for i, m in enumerate(_TOKEN.finditer(text)):
        word, end = m.group(), m.end()
        poss = bool(re.search(r"['’]s$", word)) and word.lower()[:-2] not in ("it", "that", "what",
                                                                              "there", "he", "she")
        if poss:
            word = word[:-2]
        elif text[end:end + 1] in ("'", "’") and word.endswith("s") and not text[end + 1:end + 2].isalpha():
            poss, end = True, end + 1
        if word.lower() in ("it's", "it’s", "that's", "that’s"):
            word = word[:-2]
        low = word.lower()
        before = text[toks[-1].end:m.start()] if toks else ""
        initial = not toks or bool(re.search(r"[.?!:][\"'”’)\]]*\s*[\"'“‘(\[]*$", before))
        toks.append(_Tok(word, low, m.start(), end, poss, _named(word, low, initial),
                         _is_content(word, low)))
    return toks


def _named(word: str, low: str, initial: bool) -> bool:
    if not re.search(r"[^\W\d_]", word) or word == "I":
        return False
    if re.search(r"\d|\+|[a-z][A-Z]", word) or sum(c.isupper() for c in word) >= 2:
        return True
    if not word[0].isupper() or len(word) < 2:
        return False
    return not initial or low not in (_NOT_CONTENT | _CONJ | _DEF | _INDEF | _POSSESSIVES.keys()
                                      | _PRONOUNS.keys())


def _is_content(word: str, low: str) -> bool:
    if len(low) < 2 or low in _NOT_CONTENT or low in _CONJ or not re.search(r"[^\W\d_]", low):
        return False
    if low.endswith("ly") and len(low) > 4:
        return False
    return not (low.endswith("ed") and len(low) > 4 and low not in _ED_NOUNS) or word[:1].isupper()


def _gap(text: str, toks: list[_Tok], k: int) -> str:
    """The characters between token ``k - 1`` and token ``k``."""
    return text[toks[k - 1].end:toks[k].start] if 0 < k < len(toks) else ""


def _split_marker(question: str) -> tuple[str, str]:
    """``("and", rest)``, ``("about", rest)`` for "what about ...", or ``("", question)``."""
    m = _MARKER.match(question)
    if not m or not m.group().strip() or not question[m.end():].strip(" ?.!"):
        return "", question
    kind = "about" if re.search(r"about|as\s+for|what\s+of|same", m.group(), re.I) else "and"
    return kind, question[m.end():]


def _is_question_form(toks: list[_Tok]) -> bool:
    """Starts like a question or a request: "how ...", "does ...", "on which ...", "explain ..."."""
    if len(toks) > 1 and toks[0].low in _PREP and toks[1].low in _WH:
        return True
    return bool(toks) and (toks[0].low in _WH | _AUX | _IMPERATIVE)


def _noun_ok(tok: _Tok) -> bool:
    return tok.low not in _VERBS | _AUX | _PREP | _WH | _CONJ | STOPWORDS or tok.named


def _binds(toks: list[_Tok], i: int) -> bool:
    """Whether something before token ``i`` is what a pronoun at ``i`` points at: a name, a
    content word, "a/each X", a bare plural after the auxiliary ("do models ..."), or a
    "which X" that is the subject of its verb ("which architecture outputs ... its")."""
    for j in range(_wh_phrase_end(toks), i):
        t = toks[j]
        if t.named or t.content:
            return True
        if t.low in _INDEF and j + 1 < i and _noun_ok(toks[j + 1]):
            return True
        if j > 0 and toks[j - 1].low in _AUX and t.low in _GENERIC and t.low.endswith("s"):
            return True
    if len(toks) > 2 and toks[0].low in ("which", "what", "whose"):
        k = _wh_np_end(toks)
        if 1 < k < i and _is_subject_verb(toks, k):
            return True
    return False


def _wh_phrase_end(toks: list[_Tok]) -> int:
    """The end of a leading "what X" / "how many X" / "on which X" before its auxiliary ("does"):
    what the question asks for, which a pronoun after it does not point at."""
    i = 1 if toks and toks[0].low in _PREP else 0
    if i < len(toks) and toks[i].low in ("what", "which", "how", "whose"):
        for k in range(i + 1, min(len(toks), i + 8)):
            if toks[k].low in _AUX:
                return k
            verb = toks[k].low in _VERBS - _GENERIC and not (k + 1 < len(toks) and toks[k + 1].low in _AUX)
            if verb or toks[k].low in _PRONOUNS:  # "which model reaches ..." is no object
                break
    return 0


def _wh_np_end(toks: list[_Tok]) -> int:
    """After "which"/"what": the end of its noun phrase ("which [simple training principle] fits")."""
    k = 1
    while k < len(toks) and (toks[k].low not in _AUX | _VERBS | _PREP | _WH | _CONJ | STOPWORDS
                             or (toks[k].low in _VERBS and k + 1 < len(toks)
                                 and toks[k + 1].low in _AUX)):  # "which test does"
        k += 1
    if 2 < k < len(toks) and toks[k].low in STOPWORDS - _AUX - _PREP and not toks[k - 1].named:
        return k - 1  # "which papers [reject] the idea"
    if k == len(toks) or toks[k].low in _PREP:  # no known verb: "-s"/"-ed" after a noun is one
        for j in range(2, k):
            if re.search(r"[^s]s$|ed$", toks[j].low) and not toks[j].named:
                return j
    return k


def _is_subject_verb(toks: list[_Tok], k: int) -> bool:
    """Whether token ``k`` (after a "which X") is its verb: a verb, or a form of "be" before a
    participle or an adjective ("which method is faster")."""
    if k >= len(toks):
        return False
    if toks[k].low in _AUX_BE:
        nxt = toks[k + 1].low if k + 1 < len(toks) else ""
        return nxt in _ADJ or nxt.endswith("ed") or nxt in _VERBS
    if toks[k].low in _AUX or toks[k].named:
        return False
    after = toks[k + 1].low if k + 1 < len(toks) else ""
    return (toks[k].low in _VERBS or bool(re.search(r"s$|ed$", toks[k].low))
            or after in STOPWORDS - _AUX - _PREP - _CONJ)  # "which papers reject the ..."


@dataclass(frozen=True)
class _Ref:
    start: int  # character span in the question
    end: int
    kind: str  # "it", "they", "authors", "context" (points at something else of the topic)
    poss: bool  # "its", "the model's"
    tail: str = ""  # a noun the reference modifies ("the model size" -> "size")
    demonstrative: bool = False  # "this", "that method", "in it": bound only by a name or a clause


def _references(text: str, toks: list[_Tok]) -> list[_Ref]:
    """Pronouns and references in ``text`` with nothing before them to point at."""
    expletive = [m.span() for m in _EXPLETIVE.finditer(text)]
    refs = []
    i = 0
    while i < len(toks):
        t, prev = toks[i], toks[i - 1].low if i else ""
        ref = None
        if t.low in _PRONOUNS or t.low in _POSSESSIVES:
            if not any(a <= t.start < b for a, b in expletive):
                kind = _PRONOUNS.get(t.low) or _POSSESSIVES[t.low]
                # "what are zero convolutions in it?": bound like "this", by a name or a clause
                ref = _Ref(t.start, t.end, kind, t.low in _POSSESSIVES,
                           demonstrative=prev in _PREP and t.low in ("it", "them"))
        elif t.low in _DEF and (t.low != "that" or not prev or prev in _WH | _AUX | _PREP | _CONJ
                                | _IMPERATIVE):
            j = i + 1
            while j < len(toks) and toks[j].low in _REF_ADJ and t.low == "the":
                j += 1
            noun = toks[j] if j < len(toks) else None
            after = toks[j + 1] if j + 1 < len(toks) else None
            if noun is not None and noun.low in _REF_NOUNS and (j == i + 1 or t.low == "the"):
                joined = after is not None and not _gap(text, toks, j + 1).strip()
                blocked = joined and (after.named or after.low in _DESCRIBED or (
                    noun.low in _PAPER_NOUNS and after.low in ("about", "on")))  # "the papers on X"
                if not blocked:
                    kind = "authors" if noun.low in ("authors", "author", "researchers", "team") else "it"
                    tail = ""
                    if joined and kind == "it" and not noun.poss and _is_tail(toks, j + 1):
                        tail, noun = after.text, after  # "the model size", "the network weights"
                        j += 1
                    ref = _Ref(t.start, noun.end, kind, noun.poss or bool(tail), tail)
                    i = j
            elif t.low != "the" and (noun is None or re.match(r"\s*[?.!,;]", text[t.end:])):
                ref = _Ref(t.start, t.end, "it", False)  # "why is that?", "which models use this?"
            elif t.low != "the" and (noun.low in _AUX | _VERBS | _ADJ | _PREP or noun.low.endswith("ed")):
                if not prev or prev in _WH | _AUX | _PREP | _CONJ | _IMPERATIVE:
                    ref = _Ref(t.start, t.end, "it", False)  # "does this scale?"
            elif t.low != "the" and noun is not None and _noun_ok(noun) and not noun.named:
                ref = _Ref(t.start, t.end, "context", False)  # "this problem"
        if ref is not None and t.low in _DEMONSTRATIVES:
            ref = _Ref(ref.start, ref.end, ref.kind, ref.poss, ref.tail, True)
        if ref is not None and not _bound(toks, ref):
            refs.append(ref)
        i += 1
    return refs


def _is_tail(toks: list[_Tok], k: int) -> bool:
    """Whether token ``k``, after "the model", is a noun of it ("size"), not its verb."""
    t = toks[k]
    if t.low in _GENERIC - _VERBS:
        return True
    nxt = toks[k + 1].low if k + 1 < len(toks) else ""
    return t.content and (not nxt or nxt in _AUX | _PREP)


def _bound(toks: list[_Tok], ref: _Ref) -> bool:
    i = _index_at(toks, ref.start)
    if ref.demonstrative:  # "do transformers use this?" points at the conversation, unless
        before = toks[_wh_phrase_end(toks):i]  # a name or a whole clause comes first
        return any(t.named for t in before) or sum(t.content for t in before) >= 3
    return _binds(toks, i)


def _index_at(toks: list[_Tok], start: int) -> int:
    return next(i for i, t in enumerate(toks) if t.start == start)


def is_follow_up(question: str) -> bool:
    """Whether ``question`` leans on the conversation (see the module docstring).

    >>> [is_follow_up(q) for q in ("and on ImageNet?", "What is Mamba?", "Why is that?",
    ...     "Which paper shows that pruning works?", "What is Mamba and how fast is it?")]
    [True, False, True, False, False]
    """
    marker, body = _split_marker(question)
    toks = _tokens(body)
    if not toks:
        return False
    if _references(body, toks):
        return True
    own = [t for i, t in enumerate(toks) if (t.named or t.content) and not _how_word(toks, i)]
    if marker:
        return marker == "about" or not (_is_question_form(toks) and own)
    return _is_condition(toks) or not own or _only_the_noun(toks, own)


def _how_word(toks: list[_Tok], i: int) -> bool:
    """The word after a leading "how" ("how *confident* are ...") asks; it names nothing."""
    return i == 1 and toks[0].low == "how"


def _only_the_noun(toks: list[_Tok], own: list[_Tok]) -> bool:
    """"How long are *the sequences*?": one plain noun after "the" is the conversation's,
    except in "what is the X?" (a definition)."""
    if len(own) != 1 or own[0].named:
        return False
    i = toks.index(own[0])
    definition = [t.low for t in toks[:2]] in (["what", "is"], ["what", "are"], ["who", "is"])
    return i > 0 and toks[i - 1].low == "the" and not definition


def _is_condition(toks: list[_Tok]) -> bool:
    """A bare prepositional phrase: "on ImageNet?", "compared to LSTMs?"."""
    return bool(toks) and toks[0].low in _PREP and not any(t.low in _WH | _AUX for t in toks)


@dataclass(frozen=True)
class Topic:
    """What a conversation is about: its subject ("the neural architecture search method"),
    a name attached to it ("on CIFAR-10") and the standalone question they came from."""

    subject: str
    qualifier: str
    question: str


def _clause_end(text: str, toks: list[_Tok], k: int) -> int:
    """The first token from ``k`` on that starts another clause (", and how ...", "?")."""
    while k < len(toks):
        gap = _gap(text, toks, k)
        if any(c in gap for c in "?;!") or ("," in gap and toks[k].low in _WH | _AUX | _CONJ):
            return k
        if toks[k].low in ("and", "or", "but") and k + 1 < len(toks) and toks[k + 1].low in _WH | _AUX:
            return k
        k += 1
    return k


def _span(text: str, toks: list[_Tok], a: int, b: int) -> str:
    return text[toks[a].start:toks[b - 1].end] if a < b else ""


def _np_end(text: str, toks: list[_Tok], a: int, limit: int, prep: bool = True) -> int:
    """End of the noun phrase at ``a``: before a verb, auxiliary, adjective, clause break or
    (when ``prep``) preposition; "of" does not end it."""
    k = a
    while k < limit:
        t = toks[k]
        if k > a and any(c in _gap(text, toks, k) for c in ",;:?!()"):
            break
        if t.named:
            k += 1
            continue
        if (t.low in _AUX | _VERBS | _WH | _CONJ | {"that"} or (k > a and t.low in _ADJ - _REF_ADJ)
                or (prep and t.low in _PREP and t.low != "of") or (k > a and re.search(r"ly$", t.low))
                or (k > a and t.low.endswith("ed") and t.low not in _ED_NOUNS)):
            break
        k += 1
    return k


def _base_verb(tok: _Tok) -> bool:
    """A verb as it follows "does"/"can": "reach", not "trained" or "reaches"."""
    low = tok.low
    if tok.named or low not in _VERBS or low.endswith("ed"):
        return False
    return not (low.endswith("s") and (low[:-1] in _VERBS or low[:-2] in _VERBS))


def _specific(text: str, toks: list[_Tok], a: int, b: int) -> tuple[int, int] | None:
    """The span ``a:b`` as a subject, or the part after "of" when its head is a request noun
    ("the test error of [the NAS method]"); ``None`` if it names nothing."""
    for k in range(a, b):
        if toks[k].low == "of" and not any(t.named or t.content for t in toks[a:k]):
            return _specific(text, toks, k + 1, b)
    if any(t.named or t.content for t in toks[a:b]) and toks[a].low not in _PRONOUNS | _POSSESSIVES.keys():
        end = b
        for k in range(a + 1, b):  # "codebook features for neural network interpretability"
            if (toks[k].low in _PREP | _WH | _AUX | {"that"} or "," in _gap(text, toks, k)) \
                    and toks[k].low != "of" and any(
                    t.named or t.content for t in toks[a:k]):
                end = k
                break
        while end > a + 1 and toks[end - 1].low in _PREP | STOPWORDS:
            end -= 1
        return a, end
    return None


def subject_of(question: str) -> Topic | None:
    """The topic of a standalone question (see the module docstring), or ``None``."""
    text = question
    toks = _tokens(text)
    if not toks:
        return None
    m = re.search(r"[\"“]([^\"”]{3,})[\"”]", text)
    if m:
        return Topic(m.group(0), _qualifier(text, toks, (m.start(), m.end())), question)
    end = _clause_end(text, toks, 0)
    span = None
    first = toks[0].low
    # "the X paper", "the paper on X"
    for i, t in enumerate(toks[:end]):
        if t.low in ("paper", "papers", "article", "work") and i > 1 and toks[i - 1].low not in _DEF:
            j = i - 1
            while j > 0 and toks[j - 1].low not in _DEF | _PREP | _VERBS | _AUX | _WH:
                j -= 1
            if j > 0 and toks[j - 1].low in _DEF and any(x.named or x.content for x in toks[j:i]):
                span = (j - 1, i + 1)
                break
    if span is None and first in ("what", "who") and len(toks) > 2 and toks[1].low in _AUX_BE:
        span = _specific(text, toks, 2, _np_end(text, toks, 2, end, prep=False))
    if span is None and first in ("which", "what", "whose") and len(toks) > 2:
        k = _wh_np_end(toks)
        if 1 < k < end and _is_subject_verb(toks, k) and toks[k].low not in _AUX_DO:
            det = "the " if toks[1].low not in _DEF | _INDEF else ""
            noun = _span(text, toks, 1, k)
            if det and noun.lower().startswith(("a ", "an ")):
                noun = noun.split(" ", 1)[1]
            verb_from = toks[k].start
            rest = text[verb_from:toks[end - 1].end]
            subject = f"{det}{noun} that {rest}"
            return Topic(subject, "", question)
    if span is None:
        aux = next((i for i, t in enumerate(toks[:min(end, 6)]) if t.low in _AUX), None)
        if aux is not None and aux + 1 < end and (aux == 0 or toks[0].low in _WH):
            a = aux + 1
            if toks[aux].low in _AUX_DO | _words("has have had"):
                verb = next((k for k in range(a + 1, end) if _base_verb(toks[k])
                             or toks[k].low in _AUX_BE), None)
                if verb is None:
                    b = _np_end(text, toks, a, end)
                    if b - a >= 2 and not toks[b - 1].named:
                        b -= 1
                else:
                    b = verb
            else:
                b = _np_end(text, toks, a, end)
            span = _specific(text, toks, a, b)
            if span is None and b - a >= 2 and toks[a].low not in _PRONOUNS | _POSSESSIVES.keys():
                span = (a, b)  # "how confident are [deep networks] on ..."
    if span is None:
        named = [i for i, t in enumerate(toks) if t.named]
        if named:
            a = b = named[0]
            while b < len(toks) and (toks[b].named or (toks[b].low in _REF_NOUNS and b > a)) \
                    and not any(c in _gap(text, toks, b) for c in ",;:?!()"):
                b += 1
                if toks[b - 1].poss:
                    break
            span = (a, b)
        else:
            runs = [i for i, t in enumerate(toks) if t.content and not _how_word(toks, i)]
            if not runs:
                return None
            a = runs[0]
            b = _np_end(text, toks, a, len(toks))
            span = (a, max(b, a + 1))
    a, b = span
    if a > 0 and toks[a - 1].low in ("the", "a", "an") and toks[a].low not in _DEF:
        a -= 1
    subject = text[toks[a].start:toks[b - 1].end if not toks[b - 1].poss else toks[b - 1].start
                   + len(toks[b - 1].text)]
    subject = re.sub(r"^(?:a|an)\s+", "the ", subject, flags=re.I)
    if subject.split()[0].lower() in _DEF | _INDEF:  # "The lottery ticket hypothesis: ..."
        subject = subject[0].lower() + subject[1:]
    return Topic(subject, _qualifier(text, toks, (toks[a].start, toks[b - 1].end)), question)


def _qualifier(text: str, toks: list[_Tok], span: tuple[int, int]) -> str:
    """The first "on CIFAR-10"-like phrase outside ``span``: a preposition and a name."""
    for i, t in enumerate(toks[:-1]):
        if t.low in ("on", "in", "at", "across", "over") and t.start >= span[1]:
            b = _np_end(text, toks, i + 1, len(toks))
            if i + 1 < b <= i + 6 and any(x.named for x in toks[i + 1:b]):
                return _span(text, toks, i, b)
    return ""


def _full(topic: Topic, named_own: bool = False) -> str:
    """The subject with its qualifier, unless the follow-up names things of its own."""
    if topic.qualifier and not named_own:
        return f"{topic.subject} {topic.qualifier}"
    return topic.subject


def _possessive(subject: str) -> str:
    return subject + ("'" if subject.endswith("s") else "'s")


def _is_long(subject: str) -> bool:
    return len(subject.split()) > 4 or bool(re.search(r"\s(?:%s)\s" % "|".join(_PREP | {"that"}), subject))


def _plural(subject: str) -> str:
    """"the pointer network" -> "the pointer networks" for "they"; names stay as they are."""
    words = subject.split()
    if len(words) >= 2 and words[0].lower() == "the" and re.fullmatch(r"[a-z]+", words[-1]) \
            and not words[-1].endswith("s") and not _is_long(subject):
        return subject + "s"
    return subject


def _capitalised(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:]


def _substitute(body: str, toks: list[_Tok], refs: list[_Ref], topic: Topic) -> str:
    """``body`` with its main reference replaced by the subject."""
    rank = {"it": 0, "context": 1, "they": 1, "authors": 2}
    ref = min(refs, key=lambda r: (rank[r.kind], r.start))
    named_own = any(t.named for t in toks)
    subject = _full(topic, named_own)
    if ref.kind == "context":  # "this problem": keep it, say whose
        return _appended(body, toks, topic)
    if ref.kind == "authors":
        if ref.poss:  # "the authors' conclusion": keep it, say whose
            return _appended(body, toks, topic)
        return body[:ref.start] + f"the authors of {subject}" + body[ref.end:]
    if ref.kind == "they":
        subject = _plural(subject)
    if not ref.poss:
        return body[:ref.start] + subject + body[ref.end:]
    if ref.tail:  # "the model size"
        if _is_long(subject):
            return body[:ref.start] + f"the {ref.tail} of {subject}" + body[ref.end:]
        return body[:ref.start] + f"{_possessive(subject)} {ref.tail}" + body[ref.end:]
    if not _is_long(subject):
        return body[:ref.start] + _possessive(subject) + body[ref.end:]
    # "its search time" -> "the search time of <subject>"
    i = _index_at(toks, ref.start)
    b = i + 1
    while b < len(toks) and (b == i + 1 or not any(c in _gap(body, toks, b) for c in ",;:?!()")) and (
            toks[b].named or toks[b].low not in _AUX | _PREP | _WH | _CONJ | STOPWORDS
            and (toks[b].low not in _VERBS or toks[b].low in _GENERIC)):
        b += 1
    if b == i + 1:
        return body[:ref.start] + _possessive(subject) + body[ref.end:]
    return (body[:ref.start] + f"the {_span(body, toks, i + 1, b)} of {subject}"
            + body[toks[b - 1].end:])


def _appended(body: str, toks: list[_Tok], topic: Topic) -> str:
    """``body`` with the subject added: "How long did the search take for X?"."""
    named_own = any(t.named for t in toks)
    subject = _full(topic, named_own)
    stem, end = re.match(r"(.*?)([\s?.!]*)$", body, re.S).groups()
    end = end.strip() or ("?" if _is_question_form(toks) and toks[0].low not in _IMPERATIVE else ".")
    if toks and toks[0].low in _IMPERATIVE:
        return f"{stem} about {subject}{end}"
    link = "in" if re.search(r"\bfor\b", stem, re.I) else "for"
    return f"{stem} {link} {subject}{end}"


def _with_condition(topic: Topic, phrase: str) -> tuple[str, Topic]:
    """The topic's question asked under a new condition ("on ImageNet" for "on CIFAR-10")."""
    question, phrase = topic.question, phrase.strip(" ?.!")
    if not _tokens(phrase)[0].named:
        phrase = phrase[:1].lower() + phrase[1:]
    stem, end = re.match(r"(.*?)([\s?.!]*)$", question, re.S).groups()
    end = end.strip() or "?"
    prep = phrase.split()[0].lower()
    if topic.qualifier.lower().startswith(prep + " ") and topic.qualifier in stem:
        stem = stem.replace(topic.qualifier, phrase, 1)
    else:
        toks = _tokens(stem)
        last = max((i for i, t in enumerate(toks) if t.low == prep), default=None)
        if last is not None and last > 0 and _np_end(stem, toks, last + 1, len(toks)) == len(toks):
            stem = stem[:toks[last].start] + phrase
        else:
            stem = f"{stem} {phrase}"
    return stem + end, Topic(topic.subject, phrase if any(t.named for t in _tokens(phrase)) else "",
                              stem + end)


def rewrite(question: str, topic: Topic) -> tuple[str, Topic]:
    """``question`` (a follow-up) made standalone with ``topic``, and the topic after it."""
    marker, body = _split_marker(question)
    body = body.strip()
    toks = _tokens(body)
    refs = _references(body, toks)
    if refs:
        rewritten = _substitute(body, toks, refs, topic)
        if not _is_question_form(toks):  # "what about its speed?", "its limitations?"
            rewritten = f"What about {rewritten.rstrip(' ?.!')}?"
        return _capitalised(rewritten), topic
    if all(t.low in _CONJ | _MORE for t in toks) or [t.low for t in toks] in (["what", "about"],
                                                                             ["how", "about"]):
        return f"Tell me more about {_full(topic)}.", topic  # "and?", "more details please"
    if _is_condition(toks):  # "on ImageNet?"
        return _with_condition(topic, body)
    if not _is_question_form(toks):
        words = [t for t in toks if t.low not in _DEF | _INDEF]
        if words and all(t.named for t in words):  # "what about SMASH?", "and RWKV?"
            name = _span(body, toks, 0, len(toks))
            if topic.qualifier and (any(re.sub(r"[\W\d_]+", "", t.low) in _DATASETS for t in words)
                                    or _same_family(name, topic.qualifier)):
                prep = topic.qualifier.split()[0]
                return _with_condition(topic, f"{prep} {name}")
            at = topic.question.lower().find(topic.subject.lower())
            if at >= 0:  # the previous question about the new subject
                new = topic.question[:at] + name + topic.question[at + len(topic.subject):]
                return _capitalised(new), Topic(name, topic.qualifier, new)
            return question, Topic(name, "", question)
        if len(toks) <= 8 and not any(t.low in _VERBS - _GENERIC and not t.named for t in toks[1:]):
            phrase = body.rstrip(" ?.!")  # "the training time?" -> "What about the training time ...?"
            return f"What about {phrase} for {_full(topic, any(t.named for t in toks))}?", topic
        return _capitalised(_appended(body, toks, topic)), topic
    if all(t.low in _WH | _words("so not exactly then else come") for t in toks):  # "why?"
        previous = _tokens(topic.question)
        if previous and previous[0].low in _AUX:
            why = _capitalised(body.rstrip(" ?.!"))  # "why?" + "Does X ...?" -> "Why does X ...?"
            return f"{why} {topic.question[:1].lower()}{topic.question[1:]}", topic
        return f"{_capitalised(body)} {topic.question}", topic
    return _capitalised(_appended(body, toks, topic)), topic


def _same_family(name: str, qualifier: str) -> bool:
    """"CIFAR-100" and "on CIFAR-10" name the same kind of thing (a shared name stem)."""
    stems = {re.sub(r"[\W\d_]+", "", w).lower() for w in qualifier.split()[1:]}
    return re.sub(r"[\W\d_]+", "", name).lower() in stems - {""}
