"""Measuring citewise: tooling, not part of answering a question.

- :mod:`.questions`: the evaluation's question set (dev and test splits, withheld variants);
- :mod:`.metrics`: retrieval, citation, faithfulness and refusal metrics, with definitions;
- :mod:`.run`: ``python -m rag eval`` and ``eval-retrieval``: runs, reports, comparisons;
- :mod:`.baseline`: the stock llama-index ``CitationQueryEngine`` on the same index and model;
- :mod:`.judge`: ``eval-judge``, the judge measured against hand-labelled pairs;
- :mod:`.calibrate`: ``calibrate``, the refusal classifier fitted on the dev split;
- :mod:`.bench`: ``python -m rag bench``, speed and memory against baselines in one run.

They use the product through its public API (``Pipeline``, ``PaperIndex``, the generators).
"""
