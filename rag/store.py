"""The persistent Chroma index of abstract chunks, kept in sync with the corpus.

``PaperIndex.sync(papers)`` makes the collection hold exactly the chunks of ``papers``:
new chunks are embedded and added in batches (each batch commits on its own, so a killed
ingest keeps its progress), changed metadata is updated without re-embedding, and chunks
of papers that left the corpus are deleted last. Re-running after any interruption ends
in the same state, with no duplicate and no gap.

The collection name encodes the embedder and the chunking parameters, so changing either
builds a new collection beside the old one instead of mixing incompatible vectors.

Large dumps are streamed in by :mod:`rag.bulk` instead: their chunks carry
``stream_source`` (the dump's path) and the dumps are registered apart from the corpus
sources, so ``sync`` neither reads nor deletes them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .chunking import HIDDEN_KEYS, author_key, chunk_papers
from .config import PROJECT_ROOT, Settings
from .embedding import Embedder, embedder_slug
from .errors import CorpusError, StoreError
from .types import Filters, Paper

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # pragma: no cover
    from chromadb.api import ClientAPI
    from chromadb.api.types import EmbeddingFunction
    from chromadb.config import Settings as ChromaSettings
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryResult
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores import MetadataFilters
    from llama_index.vector_stores.chroma import ChromaVectorStore

SCHEMA = "v1"
_NODE_KEYS = frozenset(HIDDEN_KEYS) | {"title"}
ADD_BATCH = 256  # chunks per commit: the most a killed ingest can lose
PAGE = 5000  # records per Chroma read (its batch limit is ~5,461)
STREAM_KEY = "stream_source"  # chunk metadata: the streamed dump a chunk belongs to
VERSION_KEY = "version"  # collection metadata: changed by every write (``PaperIndex.version``)
# Dense search. A local collection under Chroma's sync threshold (1,000 chunks) has its HNSW
# graph rebuilt, with threads, in every process that opens it, so an approximate search
# returned a different top-40 from one process to the next (and missed true neighbours: 23 of
# the 180 evaluation questions' top-40 on the bundled index). A search list at least as long
# as the collection visits every chunk: exact, the same in every process, and cheap up to
# EXACT_SEARCH_CHUNKS (~7 ms here); larger collections keep Chroma's default list.
EXACT_SEARCH_CHUNKS = 5_000
APPROXIMATE_EF = 100


@dataclass
class SyncReport:
    papers: int
    chunks: int
    added: int
    updated: int
    removed: int
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.papers} papers, {self.chunks} chunks: {self.added} added, "
            f"{self.updated} updated, {self.removed} removed in {self.seconds:.1f} s"
        )


def collection_name(settings: Settings) -> str:
    return (
        f"papers-{embedder_slug(settings.embed_model)}"
        f"-c{settings.chunk_size}-o{settings.chunk_overlap}-{SCHEMA}"
    )


def _chroma_settings() -> ChromaSettings:
    from chromadb.config import Settings as ChromaSettings

    return ChromaSettings(anonymized_telemetry=False, allow_reset=False)


@lru_cache(maxsize=1)
def no_embedding_function() -> EmbeddingFunction:
    """An embedding function that refuses to run: Chroma's default one would download
    an ONNX model. Every vector here comes from our own embedder. Registered with Chroma,
    which looks it up by name when a collection's configuration is changed."""
    from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
    from chromadb.utils.embedding_functions import register_embedding_function

    class ExplicitEmbeddingsOnly(EmbeddingFunction[Documents]):
        def __init__(self) -> None:
            pass

        def __call__(self, input: Documents) -> Embeddings:  # noqa: A002
            raise StoreError("internal: the index takes precomputed embeddings only")

        @staticmethod
        def name() -> str:
            return "citewise-explicit-embeddings"

        def get_config(self) -> dict:
            return {}

        @staticmethod
        def build_from_config(config: dict) -> "ExplicitEmbeddingsOnly":
            return ExplicitEmbeddingsOnly()

    register_embedding_function(ExplicitEmbeddingsOnly)
    return ExplicitEmbeddingsOnly()


def open_client(settings: Settings, create: bool) -> ClientAPI:
    """A Chroma client for the settings' index folder (or server)."""
    import chromadb

    if settings.chroma_url:
        from urllib.parse import urlparse

        url = urlparse(settings.chroma_url)
        try:
            client = chromadb.HttpClient(
                host=url.hostname or "127.0.0.1",
                port=url.port or 8000,
                ssl=url.scheme == "https",
                settings=_chroma_settings(),
            )
            client.heartbeat()
        except Exception as exc:
            raise StoreError(
                f"Cannot reach the Chroma server at {settings.chroma_url}: {exc}. "
                "Start it (`chroma run --path DIR --port PORT`) or unset RAG_CHROMA_URL."
            ) from exc
        return client
    folder = Path(settings.index_dir)
    _check_folder(folder, create)
    try:
        with _native_panics_hidden():
            return chromadb.PersistentClient(path=str(folder), settings=_chroma_settings())
    except BaseException as exc:  # a panic in Chroma's Rust core is a BaseException
        if not isinstance(exc, Exception) and not is_chroma_failure(exc):
            raise  # KeyboardInterrupt, SystemExit
        detail = _plain(exc)
        raise StoreError(
            f"The index at {folder} cannot be opened ({detail}). Rebuild it with "
            "`python -m rag ingest --rebuild`."
        ) from exc


_PANIC_LINE = re.compile(rb"^(?:thread '.*' (?:\(\d+\) )?panicked at |note: |stack backtrace:|\s+\d+: |"
                         rb"\s+at |Expect it to be |.*RUST_BACKTRACE)")


@contextmanager
def _native_panics_hidden() -> Iterator[None]:
    """Run the block with the process's stderr (fd 2) captured, then pass on every line but a
    Rust panic report: Chroma's core prints one before raising, and the user gets our one-line
    error instead. Only around opening the database, which happens once, before serving."""
    import sys
    import tempfile

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (embedded interpreters): capture nothing
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().splitlines(keepends=True)
                    if not _PANIC_LINE.match(line)]
            if kept:
                os.write(2, b"".join(kept))


def _plain(exc: BaseException) -> str:
    """What went wrong, in one short line: SQLite's own words when a Rust panic wraps them."""
    text = " ".join(str(exc).split())
    if m := re.search(r'message: "([^"]+)"', text):
        return m.group(1)
    return text[:200] or type(exc).__name__


def is_chroma_failure(exc: BaseException) -> bool:
    """Whether ``exc`` comes from Chroma or its Rust core (a damaged or unreadable index)."""
    return type(exc).__module__.split(".")[0] in ("chromadb", "pyo3_runtime", "sqlite3")


@contextmanager
def index_errors(where: str) -> Iterator[None]:
    """Chroma's failures while reading ``where`` (a damaged index) as one ``StoreError`` that
    says how to repair it; the project's own errors pass through."""
    try:
        yield
    except StoreError:
        raise
    except BaseException as exc:  # a panic in Chroma's Rust core is a BaseException
        if not is_chroma_failure(exc):
            raise
        detail = _plain(exc)
        raise StoreError(f"The index at {where} is damaged ({detail}). "
                         "Rebuild it with `python -m rag ingest --rebuild`.") from exc


def _check_folder(folder: Path, create: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise StoreError(f"The index path {folder} is a file, not a folder; choose another.")
    has_db = (folder / "chroma.sqlite3").exists()
    if not has_db and not create:
        raise StoreError(
            f"No index at {folder}. Build it with `python -m rag ingest` "
            "(or point RAG_INDEX_DIR at an existing index)."
        )
    if folder.exists():
        if not os.access(folder, os.R_OK | os.X_OK) or (
            has_db and not os.access(folder / "chroma.sqlite3", os.R_OK)
        ):
            raise StoreError(f"The index folder {folder} is not readable; fix its permissions.")
        if create and not os.access(folder, os.W_OK):
            raise StoreError(f"The index folder {folder} is not writable; fix its permissions.")
        foreign = [p.name for p in folder.iterdir() if not _is_ours(p)]
        if not has_db and foreign:
            raise StoreError(
                f"{folder} holds other files ({', '.join(sorted(foreign)[:3])}) and no "
                "index; refusing to write there. Choose an empty folder for the index."
            )
    elif create:
        folder.mkdir(parents=True, exist_ok=True)


def _is_ours(p: Path) -> bool:
    return p.name in {"README.md", ".gitkeep", ".lock"} or p.name.startswith("chroma")


class PaperIndex:
    """One Chroma collection of chunks for one (embedder, chunking) setting."""

    def __init__(self, settings: Settings, embedder: Embedder | BaseEmbedding | None = None,
                 create: bool = False):
        self.settings = settings
        self.name = collection_name(settings)
        self.embedder = Embedder.of(settings, embedder)
        self._client = open_client(settings, create)
        self._open(create)
        self._seen = self.version()
        self._counted: tuple[str, int] | None = None
        self._refreshing = threading.Lock()
        self._checked = time.monotonic()

    def _open(self, create: bool) -> None:
        settings = self.settings
        try:
            if create:
                self.collection = self._client.get_or_create_collection(
                    self.name,
                    metadata={"embedder": settings.embed_model},
                    configuration={"hnsw": {"space": "cosine", "ef_search": EXACT_SEARCH_CHUNKS}},
                    embedding_function=no_embedding_function(),
                )
            else:
                self.collection = self._client.get_collection(
                    self.name, embedding_function=no_embedding_function()
                )
        except StoreError:
            raise
        except Exception as exc:
            if not create and "does not exist" in str(exc).lower():
                raise StoreError(
                    f"The index at {settings.index_dir} has no collection for these "
                    f"settings ({self.name}). Build it with `python -m rag ingest`."
                ) from exc
            raise StoreError(
                f"The index at {settings.index_dir} is unusable ({exc}). Rebuild it "
                "with `python -m rag ingest --rebuild`."
            ) from exc

    # --- freshness --------------------------------------------------------------------------
    def version(self) -> str:
        """The index's version token: every write path changes it when it starts and when it
        ends (``writing``), so a reader can tell that another process wrote."""
        with index_errors(self.location):
            return str(self._meta().get(VERSION_KEY, ""))

    def refresh(self, max_age: float = 0.0) -> bool:
        """Whether the index changed since this object last looked (another process ingested,
        synced, removed or re-tagged papers); if so, a local index is reopened first. Chroma
        keeps one in-memory vector index per folder and process that never sees other
        processes' additions (counts and metadata it does see), so a reader that only kept
        its collection would miss new papers in dense search. ``max_age``: skip the check
        (one metadata read) when the last one is younger than this many seconds."""
        with self._refreshing:
            if max_age and time.monotonic() - self._checked < max_age:
                return False
            self._checked = time.monotonic()
            version = self.version()
            if version == self._seen:
                return False
            if _writer(version) != _this_process():  # this process's own clients see its writes
                self._reopen()
            self._seen = version
            return True

    @property
    def seen_version(self) -> str:
        """The version token this object last read or wrote."""
        return self._seen

    def _reopen(self) -> None:
        if not self.settings.chroma_url:
            from chromadb.api.shared_system_client import SharedSystemClient

            # Drop Chroma's cached system for this folder so the new client reads the folder
            # afresh; objects still holding the old one keep working on what they had.
            SharedSystemClient._identifier_to_system.pop(self._client._identifier, None)
            self._client = open_client(self.settings, create=False)
            self._open(create=False)

    def _bump_version(self, state: str) -> None:
        self._seen = f"{state}-{_this_process()}-{uuid.uuid4().hex}"
        self._set_meta(VERSION_KEY, self._seen)

    # --- reading ------------------------------------------------------------------------
    @property
    def vector_store(self) -> "ChromaVectorStore":
        """llama-index's store over this collection, with list metadata allowed and the
        ``contains``/``any`` filters (categories, authors) translated to Chroma."""
        return _vector_store_class()(chroma_collection=self.collection)

    @property
    def location(self) -> str:
        """Where the index lives: its Chroma server or its folder."""
        return self.settings.chroma_url or str(self.settings.index_dir)

    def count(self) -> int:
        with index_errors(self.location):
            return self.collection.count()

    def seen_count(self) -> int:
        """``count()`` at :attr:`seen_version`, read once per version (Chroma counts by
        scanning: ~16 ms at 100,000 chunks, ~70 ms at 750,000); a version still being
        written is counted afresh, one that a killed write left (no writer holds the
        folder's lock any more) once."""
        seen, counted = self._seen, self._counted
        if counted is None or counted[0] != seen or seen.startswith("writing") and self._write_in_progress():
            counted = self._counted = (seen, self.count())
        return counted[1]

    def _write_in_progress(self) -> bool:
        """Whether a write may be under way: always on a Chroma server; on a local folder,
        whether any process (this one included) holds its write lock (``_sole_writer``)."""
        if self.settings.chroma_url:
            return True
        import fcntl

        try:
            with open(Path(self.settings.index_dir) / ".lock", "a") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return True
                fcntl.flock(fh, fcntl.LOCK_UN)
                return False
        except OSError:  # e.g. a read-only folder: assume the worst, count every time
            return True

    def _pages(self, include: list[str], where: dict | None = None) -> Iterable[dict]:
        """The chunks (``where`` matches), ``PAGE`` at a time. With a filter, the matching ids
        are read first, in one call, then each page by id: Chroma evaluates a filter over the
        whole collection for every call (5 s a call at 1,000,000 chunks, so ~15 min for 200
        pages asked with offsets, against 7 s for every id at once)."""
        if where is not None:
            ids = self.chunk_ids(where)
            for start in range(0, len(ids), PAGE):
                with index_errors(self.location):
                    yield self.collection.get(ids=ids[start : start + PAGE], include=include)
            return
        offset = 0
        while True:
            with index_errors(self.location):
                page = self.collection.get(include=include, limit=PAGE, offset=offset)
            if not page["ids"]:
                return
            yield page
            offset += len(page["ids"])

    def chunk_ids(self, where: dict | None = None, limit: int | None = None, offset: int = 0) -> list[str]:
        """Ids of the chunks matching a Chroma ``where`` clause (all chunks without one);
        ids only, so Chroma evaluates the filter and nothing else is read (one call: paging
        with offsets costs 3x more on a filter matching thousands of chunks); ``limit`` and
        ``offset`` read one page."""
        with index_errors(self.location):
            return self.collection.get(where=where, include=[], limit=limit, offset=offset or None)["ids"]

    def nearest(self, vector: list[float], n: int, where: dict | None = None) -> list[tuple[str, float]]:
        """``(chunk id, cosine similarity)`` of the ``n`` chunks nearest to ``vector`` among
        those matching ``where``, best first (ids and distances only are read)."""
        with index_errors(self.location):
            result = self.collection.query(query_embeddings=[vector], n_results=n, include=["distances"],
                                           **({"where": where} if where else {}))
        # Cosine space: distance = 1 - cosine similarity.
        return [(cid, 1.0 - float(d)) for cid, d in zip(result["ids"][0], result["distances"][0])]

    def metadata_of(self, where: dict) -> dict[str, dict]:
        """Chunk id → stored metadata of the chunks matching ``where``, in one read."""
        with index_errors(self.location):
            got = self.collection.get(where=where, include=["metadatas"])
        return {cid: meta or {} for cid, meta in zip(got["ids"], got["metadatas"])}

    def chunk_nodes(self) -> list["TextNode"]:
        """Every chunk as a llama-index node."""
        return [node for page in self.chunk_pages() for node in page]

    def chunk_pages(self) -> Iterator[list["TextNode"]]:
        """Every chunk as a llama-index node, ``PAGE`` chunks at a time (what the keyword
        index is built from without holding every chunk at once)."""
        from llama_index.core.schema import TextNode

        for page in self._pages(["documents", "metadatas"]):
            yield [
                TextNode(
                    id_=cid,
                    text=text or "",
                    metadata={k: v for k, v in meta.items() if k in _NODE_KEYS},
                    excluded_embed_metadata_keys=list(HIDDEN_KEYS),
                    excluded_llm_metadata_keys=list(HIDDEN_KEYS),
                    metadata_template="{value}",
                    text_template="{metadata_str}\n\n{content}",
                )
                for cid, text, meta in zip(page["ids"], page["documents"], page["metadatas"])
            ]

    def papers(self) -> list[Paper]:
        """The indexed papers, rebuilt from the metadata of their first chunks."""
        out = []
        for page in self._pages(["metadatas"], where={"chunk_index": 0}):
            out.extend(paper_from_metadata(m) for m in page["metadatas"])
        return sorted(out, key=lambda p: p.title.casefold())

    def abstracts(self, paper_ids: list[str]) -> dict[str, dict]:
        """``paper_id`` → metadata of its first chunk (which holds the abstract)."""
        if not paper_ids:
            return {}
        with index_errors(self.location):
            got = self.collection.get(
                where={"$and": [{"paper_id": {"$in": list(paper_ids)}}, {"chunk_index": 0}]},
                include=["metadatas"],
            )
        return {m["paper_id"]: m for m in got["metadatas"]}

    def identity_clashes(self, papers: list[Paper], owner: str | None) -> list[tuple[Paper, Paper]]:
        """``(new, indexed)`` for each of ``papers`` whose id the index already gives to another
        paper (another title or abstract) written by someone else than ``owner`` (a streamed
        dump's stored path; ``None``: the corpus files)."""
        from .corpus import same_paper

        wanted = {p.paper_id: p for p in papers}
        clashes = []
        for i in range(0, len(wanted), PAGE):
            ids = list(wanted)[i : i + PAGE]
            got = self.collection.get(where={"$and": [{"paper_id": {"$in": ids}}, {"chunk_index": 0}]},
                                      include=["metadatas"])
            for meta in got["metadatas"]:
                meta = meta or {}
                if meta.get(STREAM_KEY) == owner or meta.get("paper_id") not in wanted:
                    continue
                held, new = paper_from_metadata(meta), wanted[meta["paper_id"]]
                if not same_paper(new, held):
                    clashes.append((new, held))
        return clashes

    def chunks(self, chunk_ids: list[str]) -> dict[str, tuple[str, dict]]:
        """These chunks: ``chunk id -> (text, metadata)`` (one read, by id)."""
        if not chunk_ids:
            return {}
        with index_errors(self.location):
            got = self.collection.get(ids=list(chunk_ids), include=["documents", "metadatas"])
        return {cid: (text or "", meta or {})
                for cid, text, meta in zip(got["ids"], got["documents"], got["metadatas"])}

    # --- the corpus files and streamed dumps it is built from (in the collection's metadata) --
    def corpus_files(self) -> list[str]:
        """The corpus files and folders (stored paths) the index is synced with."""
        return self.registered_corpus_files() or []

    def registered_corpus_files(self) -> list[str] | None:
        """The corpus files and folders, or ``None`` when none were ever registered."""
        raw = self._meta().get("corpus_sources")
        return json.loads(raw) if raw is not None else None

    def set_corpus_files(self, paths: list[str]) -> None:
        self._set_meta("corpus_sources", json.dumps(paths))

    def streamed_dumps(self) -> dict[str, dict | None]:
        """Streamed dumps (see :mod:`rag.bulk`): path → what its last complete run saw
        (``size``, ``mtime_ns``, ``papers``, ``chunks``), ``None`` while unfinished."""
        raw = self._meta().get("stream_sources")
        return json.loads(raw) if raw else {}

    def set_dump(self, path: str, state: dict | None) -> None:
        self._set_meta("stream_sources", json.dumps({**self.streamed_dumps(), path: state}))

    def drop_dump(self, path: str) -> None:
        streams = self.streamed_dumps()
        streams.pop(path, None)
        self._set_meta("stream_sources", json.dumps(streams))

    def _meta(self) -> dict:
        """The collection's metadata as stored now (another process may have changed it)."""
        fresh = self._client.get_collection(self.name, embedding_function=no_embedding_function())
        return dict(fresh.metadata or {})

    def _set_meta(self, key: str, value: str) -> None:
        with index_errors(self.location):
            meta = self._meta()
            meta.pop("hnsw:space", None)  # fixed at creation; Chroma refuses to "modify" it
            meta[key] = value
            self.collection.modify(metadata=meta)

    # --- writing ------------------------------------------------------------------------
    def sync(
        self,
        papers: list[Paper],
        progress: bool = True,
        embed_texts: Callable[[list[str]], list[list[float]]] | None = None,
    ) -> SyncReport:
        """Make the collection hold exactly the chunks of ``papers``."""
        start = time.perf_counter()
        with self.writing() as record:
            if self.streamed_dumps() and (clashes := self.identity_clashes(papers, owner=None)):
                new, held = clashes[0]
                raise CorpusError(
                    f"id '{new.paper_id}' of '{new.title}' ({', '.join(new.sources)}) is already "
                    f"'{held.title}' ({', '.join(held.sources) or 'a streamed dump'}; {len(clashes)} "
                    "such id(s) in all). Give the paper another \"id\" and ingest "
                    "again; nothing was changed.")
            nodes = chunk_papers(papers, self.settings.chunk_size, self.settings.chunk_overlap)
            wanted = list({n.node_id: n for n in nodes}.values())
            owned = self._existing_hashes(self._corpus_scope())
            present = self._present([n.node_id for n in wanted if n.node_id not in owned])
            plan = WritePlan.between(wanted, owned, present)
            record.changed_chunks = plan.changes_chunks
            self.apply(plan, progress, embed_texts)
        return SyncReport(
            papers=len(papers), chunks=len(wanted), added=len(plan.add), updated=len(plan.update),
            removed=len(plan.delete), seconds=time.perf_counter() - start,
        )

    def _corpus_scope(self) -> dict | None:
        """The chunks ``sync`` owns: all but those of registered streamed dumps (chunks of a
        dump no longer registered count as stale, so a removal cut short is finished)."""
        streams = list(self.streamed_dumps())
        return {STREAM_KEY: {"$nin": streams}} if streams else None

    def _present(self, chunk_ids: list[str]) -> set[str]:
        """Those of ``chunk_ids`` the collection holds (whoever wrote them)."""
        present: set[str] = set()
        for i in range(0, len(chunk_ids), PAGE):
            present.update(self.collection.get(ids=chunk_ids[i : i + PAGE], include=[])["ids"])
        return present

    def _existing_hashes(self, where: dict | None = None) -> dict[str, str]:
        have: dict[str, str] = {}
        for page in self._pages(["metadatas"], where=where):
            for cid, meta in zip(page["ids"], page["metadatas"]):
                have[cid] = (meta or {}).get("paper_hash", "")
        return have

    def update_metadata(self, nodes: list["TextNode"]) -> None:
        """Replace the stored metadata of these chunks (fields they no longer have are
        removed, so a paper that lost its categories stops matching them)."""
        for i in range(0, len(nodes), ADD_BATCH):
            batch = nodes[i : i + ADD_BATCH]
            metas = [_flat(n) for n in batch]
            for meta in metas:
                meta.update({k: None for k in HIDDEN_KEYS if k not in meta})
            self.collection.update(ids=[n.node_id for n in batch], metadatas=metas)

    def apply(self, plan: "WritePlan", progress: bool = False,
              embed: Callable[[list[str]], list[list[float]]] | None = None) -> None:
        """Carry out ``plan``, inside :meth:`writing`: embed and add its new chunks (each
        batch of ``ADD_BATCH`` a commit of its own), update the changed ones' metadata, and
        delete the rest. ``embed`` replaces the index's embedder (vectors for texts)."""
        self._add(plan.add, progress, embed or self.embedder.embed_documents)
        self.update_metadata(plan.update)
        for i in range(0, len(plan.delete), PAGE):
            self.collection.delete(ids=plan.delete[i : i + PAGE])

    def _add(self, nodes: list[TextNode], progress: bool, embed: Callable[[list[str]], list[list[float]]]) -> None:
        if not nodes:
            return
        from llama_index.core.schema import MetadataMode
        from tqdm import tqdm

        # Similar lengths in a batch waste less padding: embed shortest first.
        nodes = sorted(nodes, key=lambda n: len(n.text))
        store = self.vector_store
        bar = tqdm(total=len(nodes), desc="Embedding chunks", unit="chunk", disable=not progress)
        for i in range(0, len(nodes), ADD_BATCH):
            batch = nodes[i : i + ADD_BATCH]
            vectors = embed([n.get_content(metadata_mode=MetadataMode.EMBED) for n in batch])
            for node, vec in zip(batch, vectors):
                node.embedding = list(vec)
            store.add(batch)
            bar.update(len(batch))
        bar.close()

    @contextmanager
    def writing(self) -> Iterator[WriteRecord]:
        """One writer at a time on a local index (a second ingest waits). The version token
        changes as the write starts and again as it ends, however it ends (an interrupted
        write leaves a "writing" token, which readers treat as a change like any other).
        A write that completes saves the keyword index of the new version for every reader
        (``rag.keyword_index``); it yields a ``WriteRecord`` whose ``changed_chunks`` a writer
        that changed no chunk sets to False, so the saved one is carried over, not rebuilt."""
        record = WriteRecord()
        with self._sole_writer():
            before = (self.version(), self.count())
            with index_errors(self.location), self._versioned():
                yield record
                self._fit_search()
            self._save_keyword_index(before, record)

    @contextmanager
    def _sole_writer(self) -> Iterator[None]:
        """An exclusive lock on a local index folder, held until the block ends (a Chroma
        server orders its writes itself)."""
        if self.settings.chroma_url:
            yield
            return
        import fcntl

        with open(Path(self.settings.index_dir) / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _fit_search(self) -> None:
        """Exact dense search up to ``EXACT_SEARCH_CHUNKS`` chunks, Chroma's approximate one
        above (an index built before this setting existed gets it at its next write).
        Processes that open the index after this write search with it."""
        want = EXACT_SEARCH_CHUNKS if self.count() <= EXACT_SEARCH_CHUNKS else APPROXIMATE_EF
        if self.search_list() != want:
            self.collection.modify(configuration={"hnsw": {"ef_search": want}})

    def search_list(self) -> int | None:
        """Chroma's HNSW search list length (``ef_search``) for this collection."""
        return ((self.collection.configuration_json or {}).get("hnsw") or {}).get("ef_search")

    def _save_keyword_index(self, before: tuple[str, int], record: "WriteRecord") -> None:
        from . import keyword_index

        folder = keyword_index.keyword_dir(self.settings)
        if folder is None:
            return
        after = (self._seen, self.count())
        try:
            if not record.changed_chunks and keyword_index.carry_over(folder, before, after):
                return
        except OSError as exc:  # the write itself is done; readers will build it themselves
            log.warning("could not save the keyword index in %s (%s)", folder, exc)
            return
        keyword_index.build_and_save(self, folder, *after)

    @contextmanager
    def _versioned(self) -> Iterator[None]:
        self._bump_version("writing")
        try:
            yield
        finally:
            self._bump_version("written")


@dataclass
class WritePlan:
    """What one write does to the collection: the chunks to embed and add, the chunks whose
    metadata changed, and the chunk ids to delete."""

    add: list["TextNode"] = field(default_factory=list)
    update: list["TextNode"] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)

    @classmethod
    def between(cls, wanted: list["TextNode"], owned: dict[str, str], present: set[str]) -> "WritePlan":
        """From what the writer holds to ``wanted`` (unique chunks). ``owned`` maps the ids of
        the chunks this writer holds now to their paper hash; ``present`` holds ids in the
        collection held by another writer (a corpus file and a dump can share a chunk: it is
        not embedded twice, nor taken over)."""
        ids = {n.node_id for n in wanted}
        return cls(
            add=[n for n in wanted if n.node_id not in owned and n.node_id not in present],
            update=[n for n in wanted
                    if n.node_id in owned and owned[n.node_id] != n.metadata["paper_hash"]],
            delete=[cid for cid in owned if cid not in ids],
        )

    @property
    def changes_chunks(self) -> bool:
        return bool(self.add or self.update or self.delete)


@dataclass
class WriteRecord:
    """What a write under ``PaperIndex.writing`` did, as far as its end needs to know."""

    changed_chunks: bool = True


_PROCESS: dict[int, str] = {}


def _this_process() -> str:
    """A random tag of this process, new after a fork (process ids repeat across containers
    sharing an index folder, so the id alone would not tell two writers apart)."""
    return _PROCESS.setdefault(os.getpid(), uuid.uuid4().hex[:12])


def _writer(version: str) -> str | None:
    """The writing process's tag inside a version token ("written-TAG-HEX"), if any."""
    parts = version.split("-")
    return parts[1] if len(parts) == 3 else None


def _flat(node: "TextNode") -> dict:
    """A node's metadata as Chroma stores it (scalars and lists of strings)."""
    from llama_index.core.vector_stores.utils import node_to_metadata_dict

    meta = node_to_metadata_dict(node, remove_text=True, flat_metadata=False)
    return {k: ("" if v is None else v) for k, v in meta.items()}


_CHROMA_OPERATORS = {
    "==": "$eq", "!=": "$ne", ">": "$gt", "<": "$lt", ">=": "$gte", "<=": "$lte",
    "in": "$in", "nin": "$nin", "contains": "$contains",
}


def where_clause(filters: Filters | None) -> dict | None:
    """``filters`` as a Chroma ``where`` clause (``None`` when there are none)."""
    if filters is None or filters.is_empty():  # the common case imports no llama-index
        return None
    return chroma_where(llama_filters(filters))


def llama_filters(filters: Filters) -> MetadataFilters | None:
    """``filters`` as llama-index ``MetadataFilters`` (``None`` when empty). Categories and
    authors use the ``any`` operator on list metadata, which :func:`chroma_where` translates
    for Chroma (llama-index's own Chroma translation has no list operator); Chroma then
    evaluates the filters for dense and BM25 search alike."""
    from llama_index.core.vector_stores import (
        FilterCondition,
        FilterOperator,
        MetadataFilter,
        MetadataFilters,
    )

    parts = []
    if filters.paper_ids:
        parts.append(MetadataFilter(key="paper_id", value=list(filters.paper_ids), operator=FilterOperator.IN))
    if filters.first_day is not None:
        parts.append(MetadataFilter(key="published_int", value=filters.first_day, operator=FilterOperator.GTE))
    if filters.last_day is not None:
        parts.append(MetadataFilter(key="published_int", value=filters.last_day, operator=FilterOperator.LTE))
    if filters.categories:
        cats = list(dict.fromkeys(c.casefold() for c in filters.categories))
        parts.append(MetadataFilter(key="category_keys", value=cats, operator=FilterOperator.ANY))
    if filters.authors:
        names = list(dict.fromkeys(k for k in map(author_key, filters.authors) if k))
        parts.append(MetadataFilter(key="author_keys", value=names, operator=FilterOperator.ANY))
    return MetadataFilters(filters=parts, condition=FilterCondition.AND) if parts else None


def chroma_where(filters: "MetadataFilters | None") -> dict | None:
    """llama-index metadata filters → a Chroma ``where`` clause.

    Like llama-index's own translation, plus what list metadata needs: ``contains`` (the
    list holds the value) and ``any`` (it holds one of the values), which Chroma 1.x
    answers with ``$contains``; llama-index's ``ChromaVectorStore`` rejects both.

    >>> from llama_index.core.vector_stores import MetadataFilter, MetadataFilters
    >>> chroma_where(MetadataFilters(filters=[
    ...     MetadataFilter(key="author_keys", value=["a smith", "b wu"], operator="any"),
    ...     MetadataFilter(key="year", value=2021, operator=">=")]))["$and"]
    [{'$or': [{'author_keys': {'$contains': 'a smith'}}, {'author_keys': {'$contains': 'b wu'}}]}, {'year': {'$gte': 2021}}]
    """
    from llama_index.core.vector_stores import MetadataFilters

    if filters is None or not filters.filters:
        return None
    parts = []
    for f in filters.filters:
        if isinstance(f, MetadataFilters):
            nested = chroma_where(f)
            if nested:
                parts.append(nested)
        elif f.operator == "any":
            values = list(f.value)
            options = [{f.key: {"$contains": v}} for v in values]
            parts.append(options[0] if len(options) == 1 else {"$or": options})
        elif f.operator in _CHROMA_OPERATORS:
            parts.append({f.key: {_CHROMA_OPERATORS[f.operator]: f.value}})
        else:
            raise StoreError(f"internal: the index cannot filter with '{f.operator}'")
    if len(parts) == 1:
        return parts[0]
    return {"$or" if filters.condition == "or" else "$and": parts} if parts else None


@lru_cache(maxsize=1)
def _vector_store_class() -> type[ChromaVectorStore]:
    """``ChromaVectorStore`` whose queries translate filters with :func:`chroma_where`."""
    from dataclasses import replace

    from llama_index.vector_stores.chroma import ChromaVectorStore

    class CitewiseChromaStore(ChromaVectorStore):
        flat_metadata: bool = False  # chunks carry lists (categories, authors)

        def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
            if query.filters is not None:
                where = chroma_where(query.filters)
                query = replace(query, filters=None)
                if where:
                    kwargs["where"] = where
            with index_errors("this index"):
                return super().query(query, **kwargs)

    return CitewiseChromaStore


def paper_from_metadata(meta: dict) -> Paper:
    cats = meta.get("categories") or ""
    src = meta.get("source_files") or ""
    return Paper(
        paper_id=meta["paper_id"],
        title=meta["title"],
        abstract=meta.get("abstract", ""),
        n_authors=meta.get("n_authors"),
        published=meta.get("published"),
        upvotes=meta.get("upvotes"),
        authors=meta.get("authors"),
        categories=tuple(cats.split()) if cats else (),
        sources=tuple(s for s in src.split(", ") if s),
        url=meta.get("url"),
        doi=meta.get("doi"),
        arxiv_id=meta.get("arxiv_id"),
    )


def portable_path(path: Path) -> str:
    """Paths inside the project are stored relative to it, so a moved checkout works."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def resolve_stored_path(stored: str) -> Path:
    p = Path(stored)
    return p if p.is_absolute() else PROJECT_ROOT / p
