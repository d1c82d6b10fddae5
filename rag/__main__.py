"""``python -m rag``: the command line (see ``rag.cli``)."""

from .cli import main

main()
