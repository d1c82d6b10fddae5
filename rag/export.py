"""An answer with its references, ready to paste: Markdown (links to the papers, the
supporting sentences quoted) or BibTeX (one entry per cited paper, written by bibtexparser).

>>> from rag.types import Answer, Citation, Source
>>> source = Source(1, "1506.03134", "Pointer Networks", 0.9, "", "Ptr-Nets point.",
...                 {"published": "2015-06-09", "arxiv_id": "1506.03134",
...                  "url": "https://arxiv.org/abs/1506.03134"})
>>> answer = Answer(question="q", text="Ptr-Nets point [1].", refused=False,
...                 citations=[Citation(1, "1506.03134", "Pointer Networks", ["Ptr-Nets point."])],
...                 sources=[source])
>>> print(to_markdown(answer))
Ptr-Nets point [1].
<BLANKLINE>
**References**
<BLANKLINE>
1. [Pointer Networks](https://arxiv.org/abs/1506.03134) (2015-06-09)
   > Ptr-Nets point.
>>> print(to_bibtex(answer).strip())
@misc{arxiv1506_03134,
 archiveprefix = {arXiv},
 eprint = {1506.03134},
 title = {{Pointer Networks}},
 url = {https://arxiv.org/abs/1506.03134},
 year = {2015}
}
"""

from __future__ import annotations

import re

from .prompts import REFUSAL
from .types import NOT_FOUND, Answer, Source

__all__ = ["FORMATS", "to_bibtex", "to_markdown"]

FORMATS = ("text", "json", "markdown", "bibtex")
_LATEX_SPECIAL = re.compile(r"([\\&%$#_{}~^])")
_LATEX = {"\\": r"\textbackslash{}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _md(text: str) -> str:
    """Plain text safe inside Markdown link text and quotes."""
    return re.sub(r"([\\`*_\[\]<>])", r"\\\1", " ".join(str(text).split()))


def _paper_md(source: Source) -> str:
    meta = source.metadata or {}
    title = f"[{_md(source.title)}]({meta['url']})" if meta.get("url") else _md(source.title)
    return title + (f" ({meta['published']})" if meta.get("published") else "")


def to_markdown(answer: Answer) -> str:
    """The answer's text, then its references as a numbered list (the numbers of its ``[n]``
    markers), each linked to the paper when the corpus gave a link, with the supporting
    sentences quoted. A not-found answer lists the closest papers instead."""
    by_number = {s.number: s for s in answer.sources}
    parts = [answer.text.strip(), ""]
    if answer.citations:
        parts += ["**References**", ""]
        for c in answer.citations:
            source = by_number.get(c.number)
            parts.append(f"{c.number}. " + (_paper_md(source) if source else _md(c.title)))
            parts += [f"   > {_md(sentence)}" for sentence in c.evidence]
    elif answer.outcome == NOT_FOUND and answer.sources:
        parts += ["**Closest papers found**", ""]
        parts += [f"{s.number}. {_paper_md(s)}" for s in answer.sources]
    return "\n".join(parts).strip()


def _latex(text: str) -> str:
    return _LATEX_SPECIAL.sub(lambda m: _LATEX.get(m.group(1), "\\" + m.group(1)), " ".join(text.split()))


def _key(source: Source, taken: set[str]) -> str:
    meta = source.metadata or {}
    if meta.get("arxiv_id"):
        base = "arxiv" + re.sub(r"\W", "_", str(meta["arxiv_id"]))
    else:
        word = next(iter(re.findall(r"[A-Za-z0-9]+", source.title)), "paper").lower()
        base = word + str(meta.get("published", ""))[:4]
    key, n = base, 1
    while key in taken:
        n += 1
        key = f"{base}_{n}"
    taken.add(key)
    return key


def to_bibtex(answer: Answer) -> str:
    """One ``@misc`` entry per cited paper (title, year, DOI, arXiv eprint, URL, as far as
    the corpus gives them). An answer that cites nothing is a one-line BibTeX comment."""
    from bibtexparser.bibdatabase import BibDatabase
    from bibtexparser.bwriter import BibTexWriter

    by_number = {s.number: s for s in answer.sources}
    cited = [by_number[c.number] for c in answer.citations if c.number in by_number]
    if not cited:
        return f"% {REFUSAL if answer.refused else answer.text.strip()} Nothing is cited.\n"
    taken: set[str] = set()
    entries = []
    for source in cited:
        meta = source.metadata or {}
        entry = {"ENTRYTYPE": "misc", "ID": _key(source, taken), "title": "{" + _latex(source.title) + "}"}
        if meta.get("published"):
            entry["year"] = str(meta["published"])[:4]
        if meta.get("doi"):
            entry["doi"] = _latex(str(meta["doi"]))
        if meta.get("arxiv_id"):
            entry.update(eprint=str(meta["arxiv_id"]), archiveprefix="arXiv")
        if meta.get("url"):
            entry["url"] = str(meta["url"])
        entries.append(entry)
    database = BibDatabase()
    database.entries = entries
    writer = BibTexWriter()
    writer.order_entries_by = None  # the order of the answer's citations
    return writer.write(database)
