"""Measure the local generator: conversion, cached reload, prefill and decode speed.

    python scripts/measure_generation.py                 # cached reload + speed
    python scripts/measure_generation.py --convert       # also time a fresh GGUF conversion
    python scripts/measure_generation.py --threads 1,2 --new-tokens 64

Speed is measured on a ~300-token prompt, through ``stream`` (streamer in a worker
thread, what the app uses) and through ``bare_generate`` (plain ``model.generate``).
CPU timings on a shared machine are noisy: the load average is printed alongside.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

for _k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ.setdefault(_k, "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.config import Settings  # noqa: E402
from rag.generation import TransformersGenerator  # noqa: E402
from rag.generation.models import resolve_model  # noqa: E402

ABSTRACTS = [
    "[1] Attention Is All You Need. The dominant sequence transduction models are based on "
    "complex recurrent or convolutional neural networks. We propose a new simple network "
    "architecture, the Transformer, based solely on attention mechanisms, dispensing with "
    "recurrence and convolutions entirely. Our model achieves 28.4 BLEU on the WMT 2014 "
    "English-to-German translation task, improving over the existing best results by over 2 BLEU.",
    "[2] BERT: Pre-training of Deep Bidirectional Transformers. BERT is designed to pre-train deep "
    "bidirectional representations from unlabeled text by jointly conditioning on both left and "
    "right context. It obtains new state-of-the-art results on eleven natural language processing "
    "tasks, including pushing the GLUE score to 80.5% and SQuAD v1.1 Test F1 to 93.2.",
    "[3] Dense Passage Retrieval for Open-Domain Question Answering. We show that retrieval can be "
    "practically implemented using dense representations alone, where embeddings are learned from "
    "a small number of questions and passages by a simple dual-encoder framework. Our dense "
    "retriever outperforms a strong Lucene-BM25 system by 9%-19% absolute in top-20 passage "
    "retrieval accuracy.",
]
MESSAGES = [
    {"role": "system", "content": "Answer the question using only the numbered abstracts. "
     "Cite the abstracts you use as [n]. If they do not answer it, say so."},
    {"role": "user", "content": "\n\n".join(ABSTRACTS)
     + "\n\nQuestion: What does each of these papers report? Give one sentence per paper."},
]


def _load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model spec (default: Settings().model)")
    ap.add_argument("--convert", action="store_true", help="also time a conversion into a temp cache")
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts to try")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--no-quantize", action="store_true")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    base = Settings()
    spec = args.model or base.model
    print(f"model {spec}; {_load()}")

    if args.convert:
        tmp = Path(tempfile.mkdtemp(prefix="citewise-convert-"))
        try:
            t0 = time.perf_counter()
            resolve_model(spec, tmp)
            print(f"conversion (join + verify + GGUF load + save): {time.perf_counter() - t0:.1f} s")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    t0 = time.perf_counter()
    resolved = resolve_model(spec, base.model_cache_dir)
    t_resolve = time.perf_counter() - t0
    threads = [int(t) for t in args.threads.split(",")]
    settings = base.with_overrides(model=spec, threads=threads[0], quantize=not args.no_quantize)
    gen = TransformersGenerator(settings)
    t0 = time.perf_counter()
    gen.load()
    t_load = time.perf_counter() - t0
    print(f"cached reload: resolve+verify {t_resolve:.2f} s, load+quantize {t_load:.1f} s "
          f"-> {gen.device} ({resolved.kind}, {resolved.path})")

    import torch

    def bare(out: list) -> None:
        """prefill (1 new token), then the full answer, with plain model.generate"""
        _, prefill, _ = gen.bare_generate(MESSAGES, 1)
        text, secs, new = gen.bare_generate(MESSAGES, args.new_tokens)
        out.append((text, prefill, secs, new, (new - 1) / max(secs - prefill, 1e-9)))

    def in_thread(fn, *a):  # noqa: ANN001, ANN002
        t = threading.Thread(target=fn, args=a)
        t.start()
        t.join()

    n_prompt = gen.count_tokens(MESSAGES)
    gen.bare_generate(MESSAGES, 2)  # warm-up
    for n in threads:
        torch.set_num_threads(n)
        main_thread: list = []
        worker: list = []  # stream decodes in a worker thread: compare like with like
        bare(main_thread)
        in_thread(bare, worker)
        t0 = time.perf_counter()
        text_s = gen.generate(MESSAGES, args.new_tokens)
        secs_s, tm = time.perf_counter() - t0, gen.last_timing
        print(f"threads={n} prompt={n_prompt} tok, {_load()}")
        for label, (_, prefill, secs, new, rate) in (("main thread", main_thread[0]), ("worker thread", worker[0])):
            print(f"  bare_generate ({label}): prefill {prefill:.2f} s, {new} tokens in {secs:.2f} s, "
                  f"decode {rate:.1f} tok/s")
        print(f"  stream: first token {tm.time_to_first_token:.2f} s, {tm.new_tokens} tokens in "
              f"{secs_s:.2f} s, decode {tm.decode_tokens_per_s:.1f} tok/s")
        print(f"  same text: {text_s == main_thread[0][0]}; answer: {text_s[:160]!r}")

if __name__ == "__main__":
    main()
