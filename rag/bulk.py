"""Stream a large abstract dump (JSON lines or CSV, e.g. the arXiv metadata snapshot) into
the index with flat memory, batched commits and resumability.

``python -m rag ingest --stream arxiv-metadata.jsonl`` runs :func:`ingest_dump`:

1. **Check.** Every record is parsed first, with the same parser and the same one-line
   errors as :mod:`rag.corpus` (``FILE, line N: ...``): a bad line stops the run before
   anything is written, so the index never holds half a dump because of a typo. The pass
   also notes each paper id's line number in an on-disk scratch table, so an id that the
   dump repeats is indexed once (its *last* record wins, with a warning) without holding
   a million ids in memory.
2. **Stream.** The dump is registered (``PaperIndex.streamed_dumps``) and read again, a
   batch of papers at a time. One read per batch tells which papers are already indexed
   unchanged (skipped without even being chunked); the others are chunked, only their
   missing chunks are embedded (shortest first) and added, ``ADD_BATCH`` per commit,
   changed metadata is updated in place and an older version's chunks are deleted. A
   killed run keeps every committed batch; running it again skips them: no duplicate, no
   gap. A progress bar runs over the file's bytes, so its ETA needs no line count.
3. **Sweep.** Chunks of papers that are no longer in the dump are deleted, and the run is
   recorded (size, modification time, counts): ``python -m rag ingest`` then re-streams
   the dump only when the file changed or its last run did not finish.

Every chunk of a dump carries ``stream_source`` (the dump's path as registered), which
keeps ``PaperIndex.sync`` away from it and lets ``--remove DUMP`` delete exactly it. Memory
is bounded by the batch, whatever the dump's length (Chroma's own vector index, in the
same process for a local index, still grows with the collection). Dumps are not merged
with other sources: a paper in a dump and in a corpus file keeps the chunks of each (a
chunk both have is stored once). An index begun with a dump starts with no default
corpus; add one with ``python -m rag ingest PATH``.

>>> report = ingest_dump(Settings(), "arxiv-metadata.jsonl")   # doctest: +SKIP
>>> report.summary()                                           # doctest: +SKIP
'100000 papers, 100000 chunks: 100000 added, 0 updated, 0 removed in 3120.4 s'
>>> ingest_dump(Settings(), "arxiv-metadata.jsonl").added      # doctest: +SKIP
0
"""

from __future__ import annotations

import ctypes
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from .chunking import chunk_papers, paper_hash, paper_of
from .config import Settings
from .corpus import stream_records
from .errors import CorpusError
from .store import (
    PAGE,
    STREAM_KEY,
    PaperIndex,
    SyncReport,
    WritePlan,
    portable_path,
    resolve_stored_path,
)
from .types import Paper

if TYPE_CHECKING:  # pragma: no cover
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from tqdm import tqdm

    from .embedding import Embedder

__all__ = [
    "BATCH_PAPERS",
    "STREAM_KEY",
    "dump_is_current",
    "ingest_dump",
    "refresh_dumps",
    "remove_dump",
    "stream_dump",
]

BATCH_PAPERS = 512  # papers read, checked and written per round (memory is bounded by it)
_SQL_VARS = 500  # ids per scratch-table query


def ingest_dump(
    settings: Settings,
    path: Path | str,
    progress: bool = True,
    embedder: Embedder | BaseEmbedding | None = None,
    batch_papers: int = BATCH_PAPERS,
) -> SyncReport:
    """Stream the dump at ``path`` into the settings' index (created if needed) and
    register it, so ``python -m rag ingest`` keeps it in sync from then on."""
    stream_records(path)  # a missing file, a folder or a listing fails here, in one line
    index = PaperIndex(settings, embedder=embedder, create=True)
    return stream_dump(index, path, progress=progress, batch_papers=batch_papers)


def stream_dump(
    index: PaperIndex, path: Path | str, progress: bool = True, batch_papers: int = BATCH_PAPERS
) -> SyncReport:
    """Make ``index`` hold exactly the chunks of the dump at ``path`` (see the module doc)."""
    start = time.perf_counter()
    path = Path(path)
    stream_records(path)  # fails at once on a missing file, a folder or a listing
    stored = portable_path(path)
    with index.writing():
        registered = index.registered_corpus_files()
        if stored in (registered or []):
            raise CorpusError(
                f"{stored} is already a corpus source (read whole); drop it with "
                f"`python -m rag ingest --remove {stored}` before streaming it"
            )
        seen = path.stat()  # recorded at the end, only if the whole run succeeds
        with _Scratch() as scratch:
            warnings = _check(path, scratch, progress)
            if registered is None:  # an index begun with a dump holds no default corpus
                index.set_corpus_files([])
            index.set_dump(stored, None)
            report = _stream(index, path, stored, scratch, max(1, batch_papers), progress)
            report.removed += _sweep(index, stored, scratch)
        index.set_dump(stored, {
            "size": seen.st_size, "mtime_ns": seen.st_mtime_ns,
            "papers": report.papers, "chunks": report.chunks,
        })
    report.warnings = [*warnings, *report.warnings]
    report.seconds = time.perf_counter() - start
    return report


def dump_is_current(index: PaperIndex, stored: str) -> bool:
    """Whether the registered dump's last run finished and the file is unchanged since."""
    state = index.streamed_dumps().get(stored)
    path = resolve_stored_path(stored)
    if not state or not path.is_file():
        return False
    now = path.stat()
    return (state.get("size"), state.get("mtime_ns")) == (now.st_size, now.st_mtime_ns)


def refresh_dumps(index: PaperIndex, progress: bool = True) -> list[SyncReport]:
    """Bring every registered dump up to date: unchanged, finished ones cost one ``stat``
    (their report gives the recorded counts); the others are streamed again."""
    reports = []
    for stored, state in index.streamed_dumps().items():
        if dump_is_current(index, stored):
            reports.append(SyncReport(papers=state["papers"], chunks=state["chunks"], added=0,
                                      updated=0, removed=0, seconds=0.0))
        else:
            reports.append(stream_dump(index, resolve_stored_path(stored), progress=progress))
    return reports


def remove_dump(index: PaperIndex, stored: str) -> int:
    """Unregister a dump and delete its chunks, a page at a time; returns how many.
    Unregistering comes first: if this is cut short, the next ``sync`` deletes the rest."""
    removed = 0
    with index.writing():
        index.drop_dump(stored)
        while ids := index.chunk_ids({STREAM_KEY: stored}, limit=PAGE):
            index.apply(WritePlan(delete=ids))
            removed += len(ids)
    return removed


# --- the three passes -------------------------------------------------------------------
def _check(path: Path, scratch: "_Scratch", progress: bool) -> list[str]:
    """Parse every record (a bad one raises before any write) and note id → line."""
    with _ByteBar(path, f"Checking {path.name}", progress) as bar:
        for line, paper in stream_records(path, on_bytes=bar):
            scratch.note(paper.paper_id, line)
    scratch.finish()
    repeated, examples = scratch.repeats()
    if not repeated:
        return []
    shown = "; ".join(f"'{pid}' on lines {lines}" for pid, lines in examples)
    return [f"{path}: {repeated} records repeat a paper id found later in the file "
            f"({shown}{'; ...' if repeated > len(examples) else ''}); the last record of "
            "each id was indexed"]


def _stream(
    index: PaperIndex, path: Path, stored: str, scratch: "_Scratch", batch_papers: int,
    progress: bool,
) -> SyncReport:
    report = SyncReport(papers=0, chunks=0, added=0, updated=0, removed=0, seconds=0.0)
    skip = scratch.superseded()
    next_skip = next(skip, None)
    batch: list[Paper] = []
    with _ByteBar(path, f"Streaming {path.name}", progress) as bar:
        for line, paper in stream_records(path, on_bytes=bar):
            while next_skip is not None and next_skip < line:
                next_skip = next(skip, None)
            if line == next_skip:
                continue  # a later record of the same id wins
            batch.append(paper)
            if len(batch) >= batch_papers:
                _write_batch(index, batch, stored, report)
                batch = []
                bar.show(papers=report.papers, chunks=report.chunks, added=report.added)
        if batch:
            _write_batch(index, batch, stored, report)
            bar.show(papers=report.papers, chunks=report.chunks, added=report.added)
    return report


def _write_batch(index: PaperIndex, papers: list[Paper], stored: str, report: SyncReport) -> None:
    """Bring one batch of papers into the index; each commit stands on its own."""
    clashes = {new.paper_id: held for new, held in index.identity_clashes(papers, owner=stored)}
    for paper in (p for p in papers if p.paper_id in clashes):
        report.warnings.append(
            f"{stored}: '{paper.title}' skipped: its id '{paper.paper_id}' is already "
            f"'{clashes[paper.paper_id].title}' in the index; give it another id to keep both")
    papers = [p for p in papers if p.paper_id not in clashes]
    if not papers:
        return
    held = _held_chunks(index, [p.paper_id for p in papers])
    todo = []
    for paper in papers:
        mine = {cid: m for cid, m in held.get(paper.paper_id, {}).items()
                if m.get(STREAM_KEY) == stored}
        if _complete(mine, paper_hash(paper)):
            report.chunks += len(mine)
        else:
            todo.append(paper)
    settings = index.settings
    nodes = chunk_papers(todo, settings.chunk_size, settings.chunk_overlap)
    for node in nodes:
        node.metadata[STREAM_KEY] = stored
    before = {cid: m for p in todo for cid, m in held.get(p.paper_id, {}).items()}
    owned = {cid: m.get("paper_hash", "") for cid, m in before.items() if m.get(STREAM_KEY) == stored}
    plan = WritePlan.between(nodes, owned, set(before))  # stale: an older version of these papers
    index.apply(plan)
    report.papers += len(papers)
    report.chunks += len(nodes)
    report.added += len(plan.add)
    report.updated += len(plan.update)
    report.removed += len(plan.delete)
    _release_freed_memory()


def _release_freed_memory() -> None:
    """Hand the memory the batch freed back to the system. glibc keeps it otherwise, and
    with the embedder's tensors changing shape from batch to batch the process would grow
    by about 8 KB a chunk (measured), for ever; with this it stays flat."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return None


def _held_chunks(index: PaperIndex, paper_ids: list[str]) -> dict[str, dict[str, dict]]:
    """``paper_id`` → {chunk id → metadata} of what the index holds for these papers."""
    held: dict[str, dict[str, dict]] = {}
    for cid, meta in index.metadata_of({"paper_id": {"$in": paper_ids}}).items():
        held.setdefault(meta.get("paper_id", ""), {})[cid] = meta
    return held


def _complete(chunks: dict[str, dict], digest: str) -> bool:
    """Whether these stored chunks are the whole, current version of one paper."""
    if not chunks or any(m.get("paper_hash") != digest for m in chunks.values()):
        return False
    n_chunks = next(iter(chunks.values())).get("n_chunks")
    return sorted(m.get("chunk_index") for m in chunks.values()) == list(range(n_chunks or 0))


def _sweep(index: PaperIndex, stored: str, scratch: "_Scratch") -> int:
    """Delete the dump's chunks whose paper is no longer in it (noted first, then deleted).
    The dump's chunk ids are read in one call (ids only): Chroma evaluates the filter over
    the whole collection for every call, so paging it with offsets cost ~15 min at
    1,000,000 chunks, against 7 s."""
    ids = index.chunk_ids({STREAM_KEY: stored})
    for start in range(0, len(ids), PAGE):
        page = ids[start : start + PAGE]
        known = scratch.known({paper_of(cid) for cid in page})
        scratch.note_gone([cid for cid in page if paper_of(cid) not in known])
    removed = 0
    for ids in scratch.gone(PAGE):
        index.apply(WritePlan(delete=ids))
        removed += len(ids)
    return removed


# --- helpers ----------------------------------------------------------------------------
class _Scratch:
    """On-disk notes for one run (id → line, chunks to delete) in a temporary SQLite file,
    so memory stays flat however many papers the dump holds."""

    def __enter__(self) -> "_Scratch":
        self._dir = tempfile.TemporaryDirectory(prefix="citewise-stream-")
        self.db = sqlite3.connect(Path(self._dir.name) / "scratch.sqlite3")
        self.db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
            "CREATE TABLE seen(id TEXT NOT NULL, line INTEGER NOT NULL);"
            "CREATE TABLE gone(cid TEXT NOT NULL);"
        )
        self._pending: list[tuple[str, int]] = []
        return self

    def __exit__(self, *exc: object) -> None:
        self.db.close()
        self._dir.cleanup()

    def note(self, paper_id: str, line: int) -> None:
        self._pending.append((paper_id, line))
        if len(self._pending) >= 10_000:
            self._flush()

    def _flush(self) -> None:
        self.db.executemany("INSERT INTO seen VALUES (?, ?)", self._pending)
        self._pending = []

    def finish(self) -> None:
        """After the check pass: index the notes and list the superseded lines."""
        self._flush()
        self.db.executescript(
            "CREATE INDEX seen_id ON seen(id, line);"
            "CREATE TABLE superseded AS SELECT s.line AS line, s.id AS id FROM seen s "
            "WHERE EXISTS (SELECT 1 FROM seen t WHERE t.id = s.id AND t.line > s.line);"
            "CREATE INDEX superseded_line ON superseded(line);"
        )

    def superseded(self) -> Iterator[int]:
        """Line numbers whose paper id comes again later, ascending."""
        yield from (line for (line,) in self.db.execute(
            "SELECT line FROM superseded ORDER BY line"))

    def repeats(self, examples: int = 3) -> tuple[int, list[tuple[str, str]]]:
        """How many records are superseded, and a few ids with all their lines."""
        (count,) = self.db.execute("SELECT COUNT(*) FROM superseded").fetchone()
        ids = self.db.execute("SELECT DISTINCT id FROM superseded ORDER BY line LIMIT ?",
                              (examples,)).fetchall()
        found = []
        for (pid,) in ids:
            lines = self.db.execute("SELECT line FROM seen WHERE id = ? ORDER BY line", (pid,))
            found.append((pid, ", ".join(str(line) for (line,) in lines)))
        return count, found

    def known(self, paper_ids: set[str]) -> set[str]:
        """Which of these paper ids the dump holds."""
        ids, found = list(paper_ids), set()
        for i in range(0, len(ids), _SQL_VARS):
            part = ids[i : i + _SQL_VARS]
            marks = ",".join("?" * len(part))
            found.update(r[0] for r in self.db.execute(
                f"SELECT DISTINCT id FROM seen WHERE id IN ({marks})", part))
        return found

    def note_gone(self, chunk_ids: list[str]) -> None:
        self.db.executemany("INSERT INTO gone VALUES (?)", ((c,) for c in chunk_ids))

    def gone(self, page: int) -> Iterator[list[str]]:
        cursor = self.db.execute("SELECT cid FROM gone")
        while rows := cursor.fetchmany(page):
            yield [r[0] for r in rows]


class _ByteBar:
    """A tqdm bar over a file's bytes, fed line sizes (updated every MiB, so a million
    lines cost next to nothing), with counts in its postfix."""

    def __init__(self, path: Path, desc: str, enabled: bool):
        from tqdm import tqdm

        self.bar: "tqdm" = tqdm(total=path.stat().st_size, desc=desc, unit="B", unit_scale=True,
                                unit_divisor=1024, disable=not enabled, dynamic_ncols=True)
        self.pending = 0

    def __call__(self, size: int) -> None:
        self.pending += size
        if self.pending >= 1 << 20:
            self.bar.update(self.pending)
            self.pending = 0

    def show(self, **counts: int) -> None:
        self.bar.update(self.pending)
        self.pending = 0
        self.bar.set_postfix(counts, refresh=False)

    def __enter__(self) -> "_ByteBar":
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.update(self.pending)
        self.bar.close()
