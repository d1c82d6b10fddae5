"""Answer composition over real seed abstracts: a verified lead, the sentences that settle the
question, one sentence per paper for multi-paper questions."""

from __future__ import annotations

from fakes import seed_abstract
from rag.citations import verify_answer
from rag.composition import MAX_SENTENCES, candidates, compose, lead_sentences
from rag.types import AnswerSentence, Source

NAS = seed_abstract("Our CIFAR-10 model achieves a test error rate of 3.65")
LR = seed_abstract("LR+GD reduces to a batch version of the celebrated perceptron algorithm")
TASK_VECTORS = seed_abstract("task vector")


def source(number: int, abstract: str, title: str = "T") -> Source:
    return Source(number, f"p{number}", title, 1.0 - number / 10, "", abstract)


def test_a_value_question_without_a_lead_gets_the_sentence_with_the_value():
    text = compose("What CIFAR-10 test error did the searched architecture reach?", [], [source(1, NAS)])
    assert "3.65" in text and text.count("[1]") <= 2


def test_a_verified_model_sentence_leads_and_its_evidence_follows():
    q = "What CIFAR-10 test error did the searched architecture reach?"
    verified = verify_answer("The model reaches a test error rate of 3.65 [1].", [source(1, NAS)], 0.5)
    lead = lead_sentences(q, verified.sentences)
    text = compose(q, lead, [source(1, NAS)])
    assert text.startswith("The model reaches a test error rate of 3.65 [1].")
    assert "Our CIFAR-10 model achieves a test error rate of 3.65" in text


def test_a_two_part_question_gets_both_parts_from_the_same_paper():
    q = ("When logistic regression is trained with huge step sizes, what classical algorithm does it "
         "reduce to, and what new method do the authors propose?")
    text = compose(q, [], [source(1, LR), source(2, NAS)])
    assert "perceptron" in text and "Normalized LR+GD" in text
    assert "[2]" not in text and len(verify_answer(text, [source(1, LR)], 0.5).citations) == 1
    assert text.count("[1]") <= MAX_SENTENCES


def test_a_multi_paper_question_gets_one_sentence_per_paper():
    q = "Which papers edit models by adding weight differences, and which measure test error on CIFAR-10?"
    text = compose(q, [], [source(1, TASK_VECTORS), source(2, NAS)])
    assert text.count("[1]") == 1 and text.count("[2]") == 1


def test_echoes_and_valueless_sentences_do_not_lead():
    q = "What CIFAR-10 test error did the searched architecture reach?"
    echo = AnswerSentence("The searched architecture reached a CIFAR-10 test error.", [1], 0.9, True)
    valueless = AnswerSentence("We use a recurrent network to generate model descriptions.", [1], 0.9, True)
    good = AnswerSentence("It reached a test error rate of 3.65.", [1], 0.9, True)
    uncited = AnswerSentence("It reached a test error rate of 3.65.", [], 0.9, False)
    assert lead_sentences(q, [echo, valueless, uncited, good]) == [good]


def test_candidates_rank_every_sentence_of_every_source():
    pool = candidates("perceptron algorithm", [source(1, NAS), source(2, LR)])
    assert pool[0].number == 2 and "perceptron" in pool[0].text
    assert len(pool) > 10 and pool == sorted(pool, key=lambda c: -c.score)
    assert compose("anything", [], []) == ""
