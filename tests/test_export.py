"""Links to the papers (``url``, ``doi``, ``arxiv_id`` from the corpus, through the index, on
every source) and answers exported as Markdown and BibTeX (``rag.export``, ``ask --format``)."""

from __future__ import annotations

import doctest
import json

import bibtexparser
import pytest
from typer.testing import CliRunner

import rag.export as export
from fakes import ExtractiveGenerator
from rag.cli import app
from rag.config import Settings
from rag.corpus import load_corpus, paper_links
from rag.export import to_bibtex, to_markdown
from rag.pipeline import Pipeline
from rag.ui import source_card
from test_generation import tiny  # noqa: F401 - the tiny model fixture, shared

PAPERS = [
    {"id": "1506.03134", "title": "Pointer Networks", "published": "2015-06-09",
     "doi": "10.48550/arXiv.1506.03134",
     "abstract": "We introduce a new neural architecture to learn the conditional probability of an "
                 "output sequence with elements that are discrete tokens corresponding to positions in "
                 "an input sequence. Pointer networks use attention as a pointer to select a member of "
                 "the input sequence as the output."},
    {"title": "Widgets & Gadgets: 100% of_the {data}", "url": "https://example.org/widgets",
     "published": "2024-02-03", "abstract": "We propose sparse widgets. They are 3x faster than dense widgets."},
    {"title": "Dense Gadgets", "abstract": "We study dense gadgets. Dense gadgets use more memory."},
]


def test_module_doctests():
    assert doctest.testmod(export).failed == 0


@pytest.fixture(scope="module")
def linked(tmp_path_factory, embedder):
    from rag.ingest import ingest

    folder = tmp_path_factory.mktemp("linked")
    corpus = folder / "papers.jsonl"
    corpus.write_text("".join(json.dumps(p) + "\n" for p in PAPERS), encoding="utf-8")
    settings = Settings(index_dir=folder / "index", corpus=[corpus], top_k=3)
    ingest(settings, progress=False, embedder=embedder)
    return Pipeline(settings, generator=ExtractiveGenerator(), embedder=embedder)


def test_links_come_from_the_corpus(tmp_path):
    corpus = tmp_path / "papers.jsonl"
    corpus.write_text("".join(json.dumps(p) + "\n" for p in PAPERS), encoding="utf-8")
    papers = {p.title: p for p in load_corpus([corpus]).papers}
    pointer = papers["Pointer Networks"]
    assert (pointer.arxiv_id, pointer.doi, pointer.url) == (
        "1506.03134", "10.48550/arXiv.1506.03134", "https://arxiv.org/abs/1506.03134")
    assert papers["Widgets & Gadgets: 100% of_the {data}"].url == "https://example.org/widgets"
    assert papers["Dense Gadgets"].url is None and "url" not in papers["Dense Gadgets"].metadata()
    assert paper_links({"url": "ftp://x.org/a"}) == (None, None, None)  # http(s) links only


def test_links_survive_the_index_and_reach_every_source(linked):
    papers = {p.title: p for p in linked.index.papers()}
    assert papers["Pointer Networks"].url == "https://arxiv.org/abs/1506.03134"
    assert papers["Pointer Networks"].doi == "10.48550/arXiv.1506.03134"
    top = linked.search("Which architecture outputs positions in its input sequence?", k=1)[0]
    assert top.metadata["url"] == "https://arxiv.org/abs/1506.03134"
    assert 'href="https://arxiv.org/abs/1506.03134"' in source_card(top)


def test_markdown_lists_the_cited_papers_with_their_links(linked):
    answer = linked.ask("What do pointer networks use attention for?")
    assert answer.outcome == "answered", answer
    shown = to_markdown(answer)
    assert shown.startswith(answer.text)
    assert "**References**" in shown
    assert "1. [Pointer Networks](https://arxiv.org/abs/1506.03134) (2015-06-09)" in shown
    assert all(f"   > {s}" in shown for s in answer.citations[0].evidence)


def test_bibtex_has_one_entry_per_cited_paper_and_parses_back(linked):
    answer = linked.ask("How much faster are sparse widgets than dense ones?")
    assert answer.outcome == "answered", answer
    entries = bibtexparser.loads(to_bibtex(answer)).entries
    assert [e["title"] for e in entries] == ["{Widgets \\& Gadgets: 100\\% of\\_the \\{data\\}}"]
    assert entries[0]["url"] == "https://example.org/widgets" and entries[0]["year"] == "2024"
    pointer = linked.ask("What do pointer networks use attention for?")
    (entry,) = bibtexparser.loads(to_bibtex(pointer)).entries
    assert (entry["ID"], entry["eprint"], entry["archiveprefix"], entry["doi"]) == (
        "arxiv1506_03134", "1506.03134", "arXiv", "10.48550/arXiv.1506.03134")


def test_an_answer_citing_nothing_is_a_bibtex_comment(linked):
    answer = linked.ask("What hydration should a sourdough starter have?")
    assert answer.refused and not answer.citations
    shown = to_bibtex(answer)
    assert shown.startswith("% ") and bibtexparser.loads(shown).entries == []
    assert "Closest papers found" in to_markdown(answer) or not answer.sources


def test_ask_format_on_the_command_line(tmp_path, tiny):  # noqa: F811
    corpus = tmp_path / "papers.jsonl"
    corpus.write_text("".join(json.dumps(p) + "\n" for p in PAPERS), encoding="utf-8")
    env = {"RAG_CORPUS": "[]", "RAG_INDEX_DIR": str(tmp_path / "idx"), "RAG_MODEL": str(tiny["folder"]),
           "RAG_DEVICE": "cpu", "RAG_MAX_NEW_TOKENS": "8", "RAG_MODEL_CACHE_DIR": str(tmp_path / "cache")}
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", "--quiet", str(corpus)], env=env).exit_code == 0
    question = "What do pointer networks use attention for?"
    shown = runner.invoke(app, ["ask", question, "--format", "markdown"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "https://arxiv.org/abs/1506.03134" in shown.stdout  # a reference or a closest paper
    bib = runner.invoke(app, ["ask", question, "--format", "bibtex"], env=env)
    assert bib.exit_code == 0, bib.output
    parsed = bibtexparser.loads(bib.stdout)
    assert bib.stdout.startswith("% ") or parsed.entries
    as_json = runner.invoke(app, ["ask", question, "--format", "json"], env=env)
    assert json.loads(as_json.stdout)["question"] == question
    for args, message in ((["--format", "pdf"], "unknown --format"),
                          (["--json", "--format", "markdown"], "disagree")):
        bad = runner.invoke(app, ["ask", question, *args], env=env)
        assert bad.exit_code == 1 and message in bad.output
