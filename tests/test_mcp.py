"""``python -m rag mcp`` as an MCP client sees it: the real server, launched exactly as the
README's "Use from an MCP client" configuration says, spoken to over stdio by the MCP SDK's own
client, on the real seed index and the real bundled default model.

One server process serves the whole module (a cold start with the model costs about 25 s on
a 2-core CPU): the client is a module-scoped fixture on anyio's pytest plugin, and the tests
that need no model run before the first ``ask`` loads it.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tomllib
from pathlib import Path

import pytest

from rag.sentences import split_sentences

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SECTION = "## Use from an MCP client"
#: How the ``command`` of a client configuration is launched here. ``citewise`` is the console
#: script of pyproject's [project.scripts], ``rag.cli:main``: the entry point ``python -m rag``
#: runs too, so this interpreter runs it without depending on what is on PATH.
LAUNCHERS = {"citewise": [sys.executable, "-m", "rag"]}

SEARCH = ("Which architecture uses attention to pick an element of the input sequence as each "
          "output, so that the size of the output dictionary can vary with input length?")
POINTER_NETWORKS = "Pointer Networks"
ANSWERABLE = ("What test error on CIFAR-10 did the network found by an RNN controller trained with "
              "reinforcement learning reach?")
NAS_RL = "Neural Architecture Search with Reinforcement Learning"
UNANSWERABLE = "What is a good recipe for vegetarian lasagna, and how long should it bake?"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def client_config() -> dict:
    """The ``citewise`` server of the README's MCP configuration snippet (the first ```json
    block under its "Use from an MCP client" heading)."""
    text = README.read_text(encoding="utf-8")
    if not re.search(rf"^{re.escape(SECTION)}\s*$", text, re.M):
        pytest.skip(f"README.md has no {SECTION!r} section yet: the MCP tests launch the server "
                    "from its JSON configuration snippet")
    section = re.split(rf"^{re.escape(SECTION)}\s*$", text, maxsplit=1, flags=re.M)[1]
    section = re.split(r"^## ", section, maxsplit=1, flags=re.M)[0]
    block = re.search(r"^```json\n(.*?)^```", section, re.S | re.M)
    assert block, f"README's {SECTION!r} section has no ```json block"
    return json.loads(block.group(1))["mcpServers"]["citewise"]


@pytest.fixture(scope="module")
def by_id(seed_papers) -> dict:
    return {p.paper_id: p for p in seed_papers}


@pytest.fixture(scope="module")
async def client(client_config, request):
    """The SDK's client on one ``citewise mcp`` subprocess over the seed index (given as
    ``RAG_INDEX_DIR``, the variable the README's snippet sets)."""
    from mcp import Client, StdioServerParameters

    request.getfixturevalue("seed_index")  # after client_config: no index is built for a skip
    seed_settings = request.getfixturevalue("seed_settings")
    command = LAUNCHERS[client_config["command"]]
    env = {**os.environ, **client_config.get("env", {}), "RAG_INDEX_DIR": str(seed_settings.index_dir)}
    server = StdioServerParameters(command=command[0], args=[*command[1:], *client_config.get("args", [])],
                                   env=env, cwd=ROOT)
    async with Client(server, read_timeout_seconds=300) as connected:
        yield connected


def _text(result) -> str:  # noqa: ANN001
    return "\n".join(c.text for c in result.content if c.type == "text")


# --- the configuration ---------------------------------------------------------------------
def test_readme_snippet_runs_the_console_script_with_real_settings(client_config) -> None:
    from rag.config import Settings

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert client_config["command"] in LAUNCHERS, client_config
    assert scripts[client_config["command"]] == "rag.cli:main"
    assert client_config["args"][:1] == ["mcp"], client_config
    for name in client_config.get("env", {}):  # every variable it sets is a setting (RAG_ + name)
        assert name.startswith("RAG_") and name[4:].lower() in Settings.model_fields, name


# --- no model involved ---------------------------------------------------------------------------
async def test_tools_are_listed_with_their_schemas(client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert {"search_papers", "ask"} <= set(tools)
    ask, search = tools["ask"].input_schema, tools["search_papers"].input_schema
    assert ask["required"] == ["question"] and ask["properties"]["question"]["type"] == "string"
    assert search["required"] == ["query"] and search["properties"]["k"]["type"] == "integer"
    assert search["properties"]["k"]["default"] == 5
    assert {"answer", "refused", "citations"} <= set(tools["ask"].output_schema["properties"])
    assert tools["ask"].description and tools["search_papers"].description


async def test_search_papers_finds_the_paper_with_its_passage(client, by_id) -> None:
    result = await client.call_tool("search_papers", {"query": SEARCH, "k": 3})
    assert not result.is_error, _text(result)
    papers = result.structured_content["papers"]
    assert 1 <= len(papers) <= 3
    assert papers[0]["title"] == POINTER_NETWORKS, [p["title"] for p in papers]
    assert [p["number"] for p in papers] == list(range(1, len(papers) + 1))
    assert [p["score"] for p in papers] == sorted((p["score"] for p in papers), reverse=True)
    for p in papers:
        paper = by_id[p["paper_id"]]
        assert p["title"] == paper.title and p["text"] and " ".join(p["text"].split()) in " ".join(paper.abstract.split())
        assert p["uri"] == f"citewise://papers/{p['paper_id']}"
    assert POINTER_NETWORKS in _text(result)  # the readable text for a client that shows only that


async def test_papers_are_resources(client, by_id) -> None:
    from mcp import MCPError

    listed = [str(r.uri) for r in (await client.list_resources()).resources]
    templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
    assert "citewise://papers" in listed and "citewise://papers/{paper_id}" in templates
    listing = json.loads((await client.read_resource("citewise://papers")).contents[0].text)
    assert {p["paper_id"] for p in listing} == set(by_id)  # every paper of the corpus, no other
    pointer = next(p for p in listing if p["title"] == POINTER_NETWORKS)
    page = (await client.read_resource(pointer["uri"])).contents[0]
    assert page.mime_type == "text/markdown"
    assert page.text.startswith(f"# {POINTER_NETWORKS}\n") and "Ptr-Net" in page.text
    with pytest.raises(MCPError, match="No paper with id 'no-such-paper'.*citewise://papers"):
        await client.read_resource("citewise://papers/no-such-paper")


async def test_bad_input_is_a_tool_error_that_says_what_to_do(client) -> None:
    empty = await client.call_tool("ask", {"question": "   "})
    assert empty.is_error and "question is empty; type a question" in _text(empty), _text(empty)
    long = await client.call_tool("ask", {"question": "why? " * 500})
    assert long.is_error and "please ask in under 2,000 characters" in _text(long), _text(long)
    blank = await client.call_tool("search_papers", {"query": ""})
    assert blank.is_error and "query is empty" in _text(blank), _text(blank)
    zero = await client.call_tool("search_papers", {"query": "attention", "k": 0})
    assert zero.is_error and "greater than or equal to 1" in _text(zero), _text(zero)
    for result in (empty, long, blank, zero):
        assert "Traceback" not in _text(result)


# --- the real model ----------------------------------------------------------------------------
@pytest.mark.e2e
async def test_ask_answers_with_citations_quoting_the_abstracts(client, by_id) -> None:
    result = await client.call_tool("ask", {"question": ANSWERABLE})
    assert not result.is_error, _text(result)
    answer = result.structured_content
    assert answer["refused"] is False and answer["outcome"] == "answered", answer
    assert "3.65" in answer["answer"]
    assert answer["citations"] and NAS_RL in [c["title"] for c in answer["citations"]]
    for c in answer["citations"]:
        paper = by_id[c["paper_id"]]
        assert c["title"] == paper.title and f"[{c['number']}]" in answer["answer"]
        assert c["supporting_sentence"] in split_sentences(paper.abstract), c
    assert answer["answer"] in _text(result) and NAS_RL in _text(result)


@pytest.mark.e2e
async def test_ask_refuses_what_the_papers_do_not_answer(client) -> None:
    result = await client.call_tool("ask", {"question": UNANSWERABLE})
    assert not result.is_error, _text(result)
    answer = result.structured_content
    assert answer["refused"] is True and answer["outcome"] != "answered", answer
    assert answer["refusal_reason"]
