"""The app says which of the three outcomes an answer is: a related answer never reads as
"the papers don't answer this"."""

from __future__ import annotations

import html

from rag.prompts import REFUSAL, RELATED
from rag.types import Answer, Citation, Source
from rag.ui import render_answer, render_sources

SOURCE = Source(1, "pointer-networks", "Pointer Networks", 0.9, "", "Ptr-Nets point. They solve hulls.")


def related() -> Answer:
    return Answer(question="What problems?", text=f"{RELATED} Ptr-Nets point [1].", refused=True,
                  outcome="related", citations=[Citation(1, "pointer-networks", "Pointer Networks",
                                                         ["Ptr-Nets point."])], sources=[SOURCE])


def test_a_related_answer_shows_its_evidence_not_a_refusal():
    chat, cards = render_answer(related()), render_sources(related())
    assert REFUSAL not in chat and "could be verified" in chat and "Pointer Networks" in chat
    assert "could not verify an answer" in cards and html.escape(REFUSAL) not in cards
    assert "<mark" in cards  # the quoted evidence is highlighted in its card


def test_not_found_still_says_so():
    answer = Answer(question="?", text=REFUSAL, refused=True, outcome="not_found", sources=[SOURCE])
    assert REFUSAL in render_answer(answer) and html.escape(REFUSAL) in render_sources(answer)
