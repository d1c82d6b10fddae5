"""Read paper corpora into :class:`~rag.types.Paper` records and merge repeated papers.

* Listings (``.txt``, ``.md``): scraped "Daily Papers" pages. Page chrome ("Subscribe",
  "Daily Papers", a year-less page date ...) is dropped, even when glued to the first title;
  each title is paired with the abstract after it, blank lines optional. Titles are told
  from abstracts by the alternation and by their look (at most 300 characters, 40 words and
  one sentence break). "• 3 authors" / "·" / "May 29, 2015 14" lines after an abstract give
  ``n_authors``, ``published`` and ``upvotes``.
* JSON lines (``.jsonl``, ``.json``) and CSV: ``title`` and ``abstract`` (or ``summary``),
  optional ``id``, ``authors``, ``n_authors``, ``published``/``date``/``update_date``,
  ``upvotes``, ``categories``; streamed record by record, so arXiv dumps fit in memory.

Worked example:

>>> page = '''Daily Papers
... Mar 12
... SubscribePointer Networks
... We introduce a new neural architecture to learn sequences. It uses attention.
... • 3 authors
... ·
... Jun 9, 2015 12
... '''
>>> [paper] = parse_listing(page, "page.txt")
>>> paper.paper_id, paper.title, paper.n_authors, paper.published, paper.upvotes
('pointer-networks', 'Pointer Networks', 3, '2015-06-09', 12)
>>> normalize_title("Kolmogorov–Arnold  NETWORKS!")
'kolmogorov arnold networks'
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

from rag.errors import CorpusError
from rag.types import Paper

MAX_ABSTRACT_CHARS = 20_000
MAX_TITLE_CHARS = 300  # a longer "title" is a paragraph
MAX_ID_CHARS = 80
LISTING_SUFFIXES, JSONL_SUFFIXES, CSV_SUFFIXES = (".txt", ".md"), (".jsonl", ".json"), (".csv",)
SUPPORTED_SUFFIXES = LISTING_SUFFIXES + JSONL_SUFFIXES + CSV_SUFFIXES

_MONTHS = "january february march april may june july august september october november december"
# Control characters, soft hyphens, zero-widths and the bidi controls that would reorder text
# on screen (U+202E "right-to-left override" and friends).
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u00ad\u061c\u200b-\u200f\u202a-\u202e"
                      "\u2060\u2066-\u2069\ufeff]")
_CHROME = re.compile(r"new|subscribe|daily papers|get trending papers in your email inbox"
                     r"( once a day)?!?|by ?ak and the research community|[•·|*\-–—]+", re.I)
_GLUED_SUBSCRIBE = re.compile(r"^Subscribe(?!(rs?|d|s)\b)\s*(?=\S)")  # keeps "Subscriber ..."
_PAGE_DATE = re.compile(r"([A-Za-z]{3,9})\.?\s+(\d{1,2})")  # "Mar 12": the page's, no year
_AUTHORS = re.compile(r"[•·*\-–]?\s*(\d+)\s+authors?", re.I)
_DATED = re.compile(  # "Nov 24, 2024 1": the paper's date, then its upvotes if any
    r"(?:published on\s+)?([A-Za-z]{3,9}\.?\s+\d{1,2},?\s+\d{4})(?:\s+(\d+))?", re.I)
_SENTENCE_BREAK = re.compile(r"[.!?][\"')\]]?\s+(?=[A-Z])")


def normalize_title(title: str) -> str:
    """Matching key of a title: NFKC, casefold, no accents, apostrophes or punctuation,
    single spaces. ``"Who’s  a Good-Boy?"`` gives ``"whos a good boy"``."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", title).casefold())
    text = re.sub(r"['’‘`´ʼ]", "", "".join(c for c in text if not unicodedata.combining(c)))
    text = "".join(c if c.isalnum() else " " for c in text)
    return unicodedata.normalize("NFC", " ".join(text.split()))


def paper_id_for(title: str) -> str:
    """Stable ASCII slug of the normalised title: ``"pointer-networks"``. When the slug had to
    be cut to ``MAX_ID_CHARS`` or lost non-ASCII letters, it ends in 8 hex digits of the SHA-1
    of the normalised title, so distinct titles keep distinct ids on every machine."""
    norm = normalize_title(title)
    ascii_text = norm.encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")
    if slug and len(slug) <= MAX_ID_CHARS and ascii_text == norm:
        return slug
    limit = MAX_ID_CHARS - 9
    head = slug[:limit]
    if len(slug) > limit and slug[limit] != "-" and "-" in head:
        head = head.rsplit("-", 1)[0]  # cut at a word boundary
    return f"{head.strip('-') or 'paper'}-{hashlib.sha1(norm.encode()).hexdigest()[:8]}"


def _clean(text: str) -> str:
    """Drop control and invisible characters, collapse whitespace."""
    return " ".join(_CONTROL.sub("", text).split())


def _month(name: str) -> int | None:
    name = name.lower().rstrip(".")
    months = enumerate(_MONTHS.split(), 1)
    return next((i for i, m in months if len(name) >= 3 and m.startswith(name)), None)


def _iso_date(value: Any) -> str | None:
    """``YYYY-MM-DD`` from "2023-05-01(T..)", "2023/05/01", "May 29, 2015", "29 May 2015" or
    "Mon, 2 Apr 2007 ..."; ``None`` without a full, valid date."""
    if isinstance(value, date):
        return value.isoformat()[:10]
    text = re.sub(r"^(mon|tue|wed|thu|fri|sat|sun)\w*\.?\s+", "",
                  _clean(str(value or "")).replace(",", " "), flags=re.I)
    if m := re.match(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})", text):
        y, mo, d = (int(g) for g in m.groups())
    elif m := re.match(r"([A-Za-z]{3,9})\.?\s+(\d{1,2})\s+(\d{4})\b", text):
        y, mo, d = int(m[3]), _month(m[1]), int(m[2])
    elif m := re.match(r"(\d{1,2})\s+([A-Za-z]{3,9})\.?\s+(\d{4})\b", text):
        y, mo, d = int(m[3]), _month(m[2]), int(m[1])
    else:
        return None
    try:
        return date(y, mo or 0, d).isoformat()
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    text = str(value if isinstance(value, str) else "").strip().replace(",", "")
    return int(text) if text.isdecimal() else None


def _check_abstract(abstract: str, title: str, where: str) -> None:
    if len(abstract) > MAX_ABSTRACT_CHARS:
        raise CorpusError(f"{where}: the abstract of '{title[:80]}' has {len(abstract):,} "
                          f"characters (limit {MAX_ABSTRACT_CHARS:,}); it looks like a full "
                          "paper, keep only the abstract")


def _looks_like_title(line: str) -> bool:
    """Short, and not prose: "Why X? A study of Y" passes, "We do X. It works." does not."""
    if len(line) > MAX_TITLE_CHARS or len(line.split()) > 40 or not any(map(str.isalnum, line)):
        return False
    breaks = len(_SENTENCE_BREAK.findall(line))
    return breaks == 0 or (breaks == 1 and not line.endswith("."))


@dataclass
class _Draft:
    line: int
    title: str
    abstract: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


def _tokens(text: str) -> Iterator[tuple[int, str, Any]]:
    """``(line number, kind, value)`` per non-blank line; kind is chrome, meta or text."""
    after_chrome = True  # the "Subscribe" button may be glued to the first title
    for number, raw in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
        line = re.sub(r"^#{1,6}\s+", "", _clean(raw))  # markdown headings
        if after_chrome or re.match(r"Subscribe[A-Z0-9]", line):  # "SubscribeCodebook ..."
            line = _GLUED_SUBSCRIBE.sub("", line, count=1)
        if not line:
            continue
        day = _PAGE_DATE.fullmatch(line)
        after_chrome = bool(_CHROME.fullmatch(line) or (day and _month(day[1])))
        if after_chrome:
            yield number, "chrome", {}
        elif m := _AUTHORS.fullmatch(line):
            yield number, "meta", {"n_authors": int(m[1])}
        elif (m := _DATED.fullmatch(line)) and (published := _iso_date(m[1])):
            yield number, "meta", {"published": published, "upvotes": _int(m[2])}
        elif line.isdecimal():
            yield number, "meta", {"upvotes": int(line)}
        else:
            yield number, "text", line


def parse_listing(text: str, source: str, warnings: list[str] | None = None) -> list[Paper]:
    """Papers of one scraped listing page in page order, each with ``sources=(source,)``.
    Lines that pair with nothing (a title without abstract, stray text) are skipped and
    described in ``warnings`` when a list is given."""
    return _parse(text, source, source, [] if warnings is None else warnings)


def _parse(text: str, source: str, where: str, warnings: list[str]) -> list[Paper]:
    """Pair titles with abstracts. A line is the abstract of the title above it when it reads
    as prose, unless it is itself a title followed by prose (then the title above had no
    abstract). Prose after a complete paper is never glued onto it: it is skipped."""
    if not text.strip():
        raise CorpusError(f"{where} is empty; add papers to it or leave it out of the corpus")
    tokens = list(_tokens(text))
    texts = [i for i, token in enumerate(tokens) if token[1] == "text"]
    following = {a: tokens[b][2] for a, b in zip(texts, texts[1:])}
    papers: list[Paper] = []

    def finish(draft: _Draft | None) -> None:
        if draft and not draft.abstract:
            warnings.append(f"{where}, line {draft.line}: '{draft.title[:80]}' has no abstract;"
                            " skipped")
        elif draft:
            _check_abstract(draft.abstract, draft.title, f"{where}, line {draft.line}")
            meta = {k: v for k, v in draft.meta.items() if v is not None}
            papers.append(Paper(paper_id_for(draft.title), draft.title, draft.abstract, **meta,
                                sources=(source,)))

    cur: _Draft | None = None
    for i, (number, kind, value) in enumerate(tokens):
        if kind != "text":
            if cur:  # metadata belongs to the paper above it; the first value wins
                cur.meta.update({k: v for k, v in value.items() if cur.meta.get(k) is None})
            continue
        nxt = following.get(i)
        next_is_abstract = nxt is not None and not _looks_like_title(nxt)
        title_like = _looks_like_title(value)
        # prose: no title, or a short sentence ("Papers of the day" is neither)
        prose = not title_like or (value[-1] in ".!?" and len(value.split()) >= 3)
        if cur and not cur.abstract and prose and not (title_like and next_is_abstract):
            cur.abstract = value  # the abstract of the title above
        elif title_like or (len(value) <= MAX_TITLE_CHARS and next_is_abstract):
            finish(cur)  # a title still without abstract is reported and dropped there
            cur = _Draft(number, value)
        else:  # prose after a complete paper: its title is missing
            warnings.append(f"{where}, line {number}: text without a title skipped: "
                            f"'{value[:60]}...'")
            finish(cur)
            cur = None  # nor does the metadata below it belong to the paper above
    finish(cur)
    if not papers:
        raise CorpusError(f"{where}: no papers found; a listing needs each title on its own "
                          "line followed by its abstract (JSONL/CSV need 'title' and 'abstract')")
    return papers


def _paper_from_record(record: dict[Any, Any], where: str, source: str) -> Paper:
    rec = {str(k).strip().lower(): v for k, v in record.items() if k is not None}

    def text(*names: str) -> str:
        name = next((n for n in names if n in rec), None)
        if name is None:
            raise CorpusError(f"{where}: no '{names[0]}' field; every paper needs a 'title' and "
                              "an 'abstract' (or 'summary'); add it or drop the record")
        if not isinstance(rec[name], (str, int, float, type(None))):
            raise CorpusError(f"{where}: the '{name}' is a {type(rec[name]).__name__}, not text; "
                              "write it as a plain string")
        if not (value := _clean(str(rec[name] if rec[name] is not None else ""))):
            raise CorpusError(f"{where}: the '{name}' is empty; fill it in or drop the record")
        return value

    title, abstract = text("title"), text("abstract", "summary")
    if len(title) > MAX_TITLE_CHARS:
        raise CorpusError(f"{where}: the title has {len(title)} characters (limit "
                          f"{MAX_TITLE_CHARS}); check that the 'title' field holds only the title")
    _check_abstract(abstract, title, where)
    authors, n_authors = rec.get("authors"), _int(rec.get("n_authors"))
    if isinstance(authors, (list, tuple)):  # a list of names also gives their number
        names = [_clean(str(a.get("name", "") if isinstance(a, dict) else a)) for a in authors]
        authors = ", ".join(n for n in names if n)
        n_authors = sum(1 for n in names if n) if n_authors is None else n_authors
    categories = rec.get("categories") or ()
    if isinstance(categories, str):  # arXiv dumps: "cs.LG stat.ML"
        categories = categories.replace(",", " ").replace(";", " ").split()
    dates = (_iso_date(rec.get(k)) for k in ("published", "date", "update_date"))
    url, doi, arxiv_id = paper_links(rec)
    return Paper(
        paper_id=_clean(str(rec.get("id") or "")) or paper_id_for(title),
        title=title,
        abstract=abstract,
        n_authors=n_authors,
        published=next(filter(None, dates), None),
        upvotes=_int(rec.get("upvotes")),
        authors=_clean(str(authors or "")) or None,
        categories=tuple(filter(None, (_clean(str(c)) for c in categories)))
        if isinstance(categories, (list, tuple)) else (),
        sources=(source,),
        url=url,
        doi=doi,
        arxiv_id=arxiv_id,
    )


_ARXIV_ID = re.compile(r"(?:arxiv:)?(\d{4}\.\d{4,5}(?:v\d+)?|[a-z][a-z.\-]*/\d{7}(?:v\d+)?)", re.I)
_DOI = re.compile(r"(?:https?://(?:dx\.)?doi\.org/|doi:)?(10\.\d{4,9}/\S+)", re.I)
_URL = re.compile(r"https?://[^\s\"'<>]+", re.I)


def paper_links(rec: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """``(url, doi, arxiv_id)`` of a record: an ``arxiv_id`` field or an ``id`` that is an
    arXiv identifier (as in arXiv's metadata dump), a ``doi``, and a ``url``/``link`` (http or
    https only); without one, the url is the arXiv abstract page, else the DOI's.

    >>> paper_links({"id": "1506.03134", "doi": "10.5555/2969442.2969540"})
    ('https://arxiv.org/abs/1506.03134', '10.5555/2969442.2969540', '1506.03134')
    >>> paper_links({"url": "javascript:alert(1)", "doi": "https://doi.org/10.48550/arXiv.1506.03134"})
    ('https://doi.org/10.48550/arXiv.1506.03134', '10.48550/arXiv.1506.03134', None)
    """
    def field(*names: str) -> str:
        return next((_clean(str(rec[n])) for n in names if isinstance(rec.get(n), (str, int, float))), "")

    arxiv = _ARXIV_ID.fullmatch(field("arxiv_id", "arxiv", "id"))
    doi = _DOI.fullmatch(field("doi"))
    url = _URL.fullmatch(field("url", "link"))
    arxiv_id, doi_id = (arxiv.group(1) if arxiv else None), (doi.group(1) if doi else None)
    link = url.group(0) if url else (f"https://arxiv.org/abs/{arxiv_id}" if arxiv_id else
                                     f"https://doi.org/{doi_id}" if doi_id else None)
    return link, doi_id, arxiv_id


def _lines(path: Path, on_bytes: Callable[[int], None] | None = None) -> Iterator[str]:
    """Decoded lines, endings kept, one at a time (a bad byte's error names its line);
    ``on_bytes`` is told the size of every raw line read (for byte-based progress)."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            if on_bytes is not None:
                on_bytes(len(raw))
            try:
                yield raw.removeprefix(b"\xef\xbb\xbf" if number == 1 else b"").decode()
            except UnicodeDecodeError:
                raise CorpusError(f"{path} is not UTF-8 text (line {number}); re-save it as "
                                  "UTF-8") from None


def _records(path: Path, rows: Iterator[tuple[int, dict[Any, Any]]]) -> Iterator[Paper]:
    return (paper for _, paper in _numbered_records(path, rows))


def _numbered_records(
    path: Path, rows: Iterator[tuple[int, dict[Any, Any]]]
) -> Iterator[tuple[int, Paper]]:
    found = False
    for number, record in rows:
        found = True
        yield number, _paper_from_record(record, f"{path}, line {number}", path.name)
    if not found:
        raise CorpusError(f"{path} is empty (no records); add papers with a 'title' and an "
                          "'abstract' or leave it out of the corpus")


def _jsonl_rows(
    path: Path, on_bytes: Callable[[int], None] | None = None
) -> Iterator[tuple[int, dict[Any, Any]]]:
    for number, line in enumerate(_lines(path, on_bytes), 1):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise CorpusError(f"{path}, line {number}: not valid JSON ({e.msg}); write one "
                                  "JSON object per line") from None
            except (ValueError, RecursionError) as e:  # 5,000-digit numbers, deep nesting
                reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
                raise CorpusError(f"{path}, line {number}: not valid JSON here ({reason}); write "
                                  "plain title/abstract records") from None
            if not isinstance(record, dict):
                raise CorpusError(f"{path}, line {number}: expected one JSON object per line, "
                                  'like {"title": "...", "abstract": "..."}')
            yield number, record


def _csv_rows(
    path: Path, on_bytes: Callable[[int], None] | None = None
) -> Iterator[tuple[int, dict[Any, Any]]]:
    reader = csv.DictReader(_lines(path, on_bytes))
    try:
        header = [str(h).strip().lower() for h in reader.fieldnames or ()]
        if header and ("title" not in header or not {"abstract", "summary"} & set(header)):
            raise CorpusError(f"{path}: the header row ({', '.join(header)}) needs a 'title' and"
                              " an 'abstract' (or 'summary') column; rename or add them")
        for row in reader:
            if any(isinstance(v, str) and v.strip() for v in row.values()):
                yield reader.line_num, row
    except csv.Error as e:
        raise CorpusError(f"{path}, line {reader.line_num}: malformed CSV ({e}); re-export it "
                          "as standard comma-separated CSV") from None


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"{path} does not exist; check the path")
    if path.is_dir():
        raise CorpusError(f"{path} is a folder; pass it to load_corpus to read the files in it")
    if not path.is_file():  # a FIFO, socket or device would block or never end
        raise CorpusError(f"{path} is not a regular file; pass a .txt, .jsonl or .csv file")
    return path


def read_jsonl(path: str | Path) -> Iterator[Paper]:
    """Stream the papers of a JSON-lines file (one object per line, blank lines skipped)."""
    path = _existing_file(path)
    return _records(path, _jsonl_rows(path))


def read_csv(path: str | Path) -> Iterator[Paper]:
    """Stream the papers of a CSV file whose header has ``title`` and ``abstract``."""
    path = _existing_file(path)
    return _records(path, _csv_rows(path))


def stream_records(
    path: str | Path, on_bytes: Callable[[int], None] | None = None
) -> Iterator[tuple[int, Paper]]:
    """``(line number, paper)`` for each record of a JSON-lines or CSV file, one at a time
    and in file order (nothing is merged: a repeated id comes out twice). Errors are the
    same one-line ``CorpusError`` as :func:`read_jsonl`'s, naming the file and line;
    ``on_bytes`` receives the size of every raw line read."""
    path = _existing_file(path)
    suffix = path.suffix.lower()
    if suffix not in JSONL_SUFFIXES + CSV_SUFFIXES:
        raise CorpusError(f"{path}: a streamed source must be JSON lines or CSV "
                          f"({', '.join(JSONL_SUFFIXES + CSV_SUFFIXES)}), not "
                          f"'{suffix or path.name}'")
    rows = _jsonl_rows if suffix in JSONL_SUFFIXES else _csv_rows
    return _numbered_records(path, rows(path, on_bytes))


def read_file(path: str | Path, warnings: list[str] | None = None) -> Iterator[Paper]:
    """Papers of one file, read according to its suffix; listing oddities go to warnings."""
    path = _existing_file(path)
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES + CSV_SUFFIXES:
        return read_jsonl(path) if suffix in JSONL_SUFFIXES else read_csv(path)
    if suffix not in LISTING_SUFFIXES:
        raise CorpusError(f"{path}: unsupported file type '{suffix or path.name}'; use one of "
                          f"{', '.join(SUPPORTED_SUFFIXES)}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise CorpusError(f"{path} is not UTF-8 text (line {line}); re-save it as UTF-8") from None
    return iter(_parse(text, path.name, str(path), [] if warnings is None else warnings))


def iter_corpus_files(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """Files to read: a folder gives its supported files (recursively, sorted, without hidden
    files and READMEs), a file is kept as given; repeats are dropped."""
    files: list[Path] = []
    for path in map(Path, [paths] if isinstance(paths, (str, Path)) else paths):
        if not path.is_dir():
            files.append(_existing_file(path))
            continue
        found = sorted(f for f in path.rglob("*") if f.is_file()
                       and f.suffix.lower() in SUPPORTED_SUFFIXES
                       and not f.name.lower().startswith("readme")
                       and not any(p.startswith(".") for p in f.relative_to(path).parts))
        if not found:
            raise CorpusError(f"{path} holds no corpus files ({', '.join(SUPPORTED_SUFFIXES)});"
                              " add some or point to another folder")
        files += found
    if not files:
        raise CorpusError("no corpus files given; pass at least one file or folder")
    unique: dict[Path, Path] = {}
    for f in files:
        unique.setdefault(f.resolve(), f)
    return list(unique.values())


@dataclass
class Corpus:
    """Every paper once, in order of first appearance, and what was odd while reading."""

    papers: list[Paper] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _same_text(a: str, b: str) -> bool:
    """Whether two abstracts are one text, up to case, spacing and punctuation, or one is the
    other cut short by a listing that says so ("...", "…")."""
    short, long = sorted((a.strip(), b.strip()), key=len)
    if normalize_title(short) == normalize_title(long):
        return True
    return short.endswith(("...", "…")) and normalize_title(long).startswith(normalize_title(short))


def same_paper(a: Paper, b: Paper) -> bool:
    """Whether two records are copies of one paper: same title, same abstract (one may be the
    other cut short)."""
    return normalize_title(a.title) == normalize_title(b.title) and _same_text(a.abstract, b.abstract)


def _merge(old: Paper, new: Paper, warnings: list[str]) -> Paper:
    """``old`` with ``new``'s sources added, its metadata filling gaps, the longer abstract.

    Two records are one paper only when they agree on the title and on the abstract (one may
    be the other cut short); anything else is a ``CorpusError`` naming both, so that no
    record ever lends its title to another's abstract."""
    places = f"{', '.join(old.sources)} and {', '.join(new.sources)}"
    if normalize_title(new.title) != normalize_title(old.title):
        raise CorpusError(
            f"id '{old.paper_id}' is used by two papers: '{old.title}' ({', '.join(old.sources)}) "
            f"and '{new.title}' ({', '.join(new.sources)}). Give one of them another \"id\" and "
            "ingest again; nothing was changed.")
    if not _same_text(old.abstract, new.abstract):
        raise CorpusError(
            f"'{old.title}' appears in {places} with different abstracts. Keep one of them, or "
            "give the other its own \"id\" and title, and ingest again; nothing was changed.")
    abstract = max(old.abstract, new.abstract, key=len)  # the first on a tie
    if new.abstract != old.abstract:
        kept = old if abstract is old.abstract else new
        warnings.append(f"'{old.title}' appears in {places} with abstracts of different lengths; "
                        f"kept the longer one (from {', '.join(kept.sources)})")
    fill = {k: getattr(new, k) for k in ("n_authors", "published", "upvotes", "authors",
                                         "categories", "url", "doi", "arxiv_id")
            if getattr(old, k) in (None, ()) and getattr(new, k) not in (None, ())}
    sources = old.sources + tuple(s for s in new.sources if s not in old.sources)
    return replace(old, abstract=abstract, sources=sources, **fill)


def load_corpus(paths: str | Path | Iterable[str | Path]) -> Corpus:
    """Read every file (see :func:`iter_corpus_files`) and merge the copies of a paper (same
    ``paper_id``, same title, same abstract or one cut short): sources united in order, missing
    metadata filled from later copies, the longer abstract kept (with a warning naming both
    places). Records that share an id but not the title or the abstract stop the load with a
    ``CorpusError`` naming both: the user decides which is right."""
    warnings: list[str] = []
    merged: dict[str, Paper] = {}
    for path in iter_corpus_files(paths):
        for paper in read_file(path, warnings):
            old = merged.get(paper.paper_id)
            merged[paper.paper_id] = paper if old is None else _merge(old, paper, warnings)
    return Corpus(list(merged.values()), warnings)
