"""Local text generation with transformers: streaming, greedy, one generation at a time.

torch and transformers are imported lazily (inside methods) so importing this module, the
CLI's ``--help`` and unit tests stay fast. A model is loaded once per process and shared by
every ``TransformersGenerator`` with the same (model, device, quantize).
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
import warnings
from concurrent.futures import wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..compute_thread import run_on_compute_thread, submit
from ..config import Settings
from ..console import progress, quiet_libraries
from ..devices import DevicePlan, device_plan
from ..errors import ModelError, RagError
from ..injection import escaped_messages
from .base import NO_WORDS, YES_WORDS, TimingInfo
from .models import (ResolvedModel, discard_converted, int8_cache_enabled, int8_folder, int8_key,
                     load_int8, quiet_gguf_reader, resolve_model,
                     save_int8, verify_converted)

#: Mild penalty against loops; greedy decoding otherwise.
REPETITION_PENALTY = 1.05


@dataclass(frozen=True)
class TokenOption:
    token: str  # decoded, special tokens included
    logprob: float


@dataclass(frozen=True)
class NextToken:
    """The first token of a reply (see ``TransformersGenerator.next_token``)."""

    choice: TokenOption  # the one greedy decoding picks
    text: str  # what it adds to the reply: "" for an end-of-sequence token
    is_end: bool
    top: list[TokenOption]  # the likeliest, best first
    prompt_tokens: int


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any
    device: str  # as shown, e.g. "cpu (int8)"
    resolved: ResolvedModel
    lock: threading.Lock  # one generation at a time per model


def quantize_int8(model: Any) -> bool:
    """Dynamic int8 quantization of every ``torch.nn.Linear``, in place, one layer at a time
    (the same ``quantize_dynamic`` call per layer, so a progress bar can follow it). False,
    after one warning, where this torch build cannot quantize: the model stays fp32."""
    import torch

    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError as exc:
        _warn_no_int8(exc)
        return False
    linears = [(name, m) for name, m in model.named_modules() if type(m) is torch.nn.Linear]
    for i, (name, linear) in enumerate(progress(linears, desc="Quantizing to int8", unit="layer")):
        holder = torch.nn.Sequential(linear)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.ao deprecation notices
                # per-channel: per-tensor int8 degrades answers; inplace: 3x less peak RAM
                quantize_dynamic(holder, {torch.nn.Linear: per_channel_dynamic_qconfig},
                                 dtype=torch.qint8, inplace=True)
        except (RuntimeError, NotImplementedError, AttributeError) as exc:
            if i:  # half a model quantized: not a missing feature but a failure
                raise
            _warn_no_int8(exc)
            return False
        parent, _, leaf = name.rpartition(".")
        model.get_submodule(parent)._modules[leaf] = holder[0]
    return True


_warned_no_int8 = False


def _warn_no_int8(exc: BaseException) -> None:
    global _warned_no_int8
    if not _warned_no_int8:
        _warned_no_int8 = True
        warnings.warn(f"int8 quantization is unavailable in this torch build ({type(exc).__name__}: {exc}); "
                      "running the model in float32 (slower)", RuntimeWarning, 3)


def _cached_int8(resolved: ResolvedModel, cache_dir: Path | None) -> tuple[Any, tuple[str, dict] | None]:
    """``(model or None, cache key)``: the ready int8 model from the cache when there is a
    valid entry; a damaged or unloadable one is deleted, with a warning, to be rebuilt."""
    if cache_dir is None or not int8_cache_enabled():
        return None, None
    try:
        keyed = int8_key(resolved)
    except (OSError, ValueError, KeyError) as exc:
        warnings.warn(f"cannot key the int8 cache ({type(exc).__name__}: {exc}); not using it", RuntimeWarning, 3)
        return None, None
    if keyed is None:
        return None, None
    folder = int8_folder(cache_dir, keyed[0])
    if not folder.exists():
        return None, keyed
    if not verify_converted(folder):
        discard_converted(folder, "incomplete or corrupted")
        return None, keyed
    try:
        return load_int8(folder), keyed
    except Exception as exc:  # noqa: BLE001 - any failure: rebuild from the source weights
        discard_converted(folder, f"unloadable ({type(exc).__name__}: {exc})")
        gc.collect()
        return None, keyed


def _load_on(resolved: ResolvedModel, plan: DevicePlan, cache_dir: Path | None = None) -> tuple[Any, Any, str]:
    """Tokenizer and model on ``plan``'s device. On CPU with ``plan.quantize`` the int8
    model comes from ``<cache_dir>/int8/`` when cached, else it is quantized and cached.
    The tokenizer loads on a second thread meanwhile (seconds of JSON parsing for a 150k
    vocabulary, while the model's loading runs mostly outside the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    from transformers import AutoConfig, AutoModelForCausalLM

    quiet_libraries()
    kw: dict[str, Any] = {"gguf_file": resolved.gguf_file} if resolved.gguf_file else {}
    with quiet_gguf_reader(), ThreadPoolExecutor(1, thread_name_prefix="citewise-tokenizer") as pool:
        if not resolved.gguf_file:  # import the model's code here, not concurrently with the tokenizer's
            with contextlib.suppress(KeyError):  # not a causal LM: from_pretrained says so below
                AutoModelForCausalLM._model_mapping[type(AutoConfig.from_pretrained(resolved.path))]
        tokenizer = pool.submit(_load_tokenizer, resolved.path, kw)
        model, shown = _load_model(resolved, plan, cache_dir, kw)
        return model, tokenizer.result(), f"{next(model.parameters()).device} ({shown})"


def _load_tokenizer(path: str, kw: dict[str, Any]) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, **kw)


def _load_model(resolved: ResolvedModel, plan: DevicePlan, cache_dir: Path | None,
                kw: dict[str, Any]) -> tuple[Any, str]:
    import torch
    from transformers import AutoModelForCausalLM

    quantize = plan.quantize and plan.device == "cpu"
    model, keyed = _cached_int8(resolved, cache_dir) if quantize else (None, None)
    if model is not None:
        return model, "int8"
    dtype = getattr(torch, plan.dtype)
    if plan.device == "cuda":  # accelerate places the layers (and offloads if it must)
        model = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=dtype, device_map="auto", **kw)
    else:
        model = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=dtype, **kw).to(plan.device)
    model.eval()
    if not (quantize and quantize_int8(model)):
        return model, plan.dtype
    gc.collect()  # the fp32 Linear weights are garbage now
    if keyed is not None:
        try:
            save_int8(model, cache_dir, *keyed)
        except Exception as exc:  # noqa: BLE001 - e.g. a read-only or full disk: run uncached
            warnings.warn(f"cannot cache the int8 model ({type(exc).__name__}: {exc}); "
                          "the next start quantizes again", RuntimeWarning, 2)
    return model, "int8"


def _load_or_cpu(resolved: ResolvedModel, plan: DevicePlan, quantize: bool,
                 cache_dir: Path | None = None) -> tuple[Any, Any, str]:
    try:
        return _load_on(resolved, plan, cache_dir)
    except Exception as exc:
        if plan.device == "cpu":
            raise
        import torch

        warnings.warn(f"loading {resolved.name} on {plan.device} failed ({type(exc).__name__}: {exc}); "
                      "using the CPU", RuntimeWarning, 2)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return _load_on(resolved, DevicePlan("cpu", "float32", quantize), cache_dir)


def check_memory(resolved: ResolvedModel, headroom: float = 1.2, cached: Path | None = None) -> None:
    """Refuse, with a clear message, a model whose weights do not fit in free memory
    (rather than being OOM-killed mid-load without a word). ``cached``: the int8 cache
    entry that will be loaded instead of the fp32 weights (less than half their size)."""
    import psutil

    folder = Path(resolved.path)
    files = [folder / resolved.gguf_file] if resolved.gguf_file else [
        *folder.glob("*.safetensors"), *folder.glob("*.bin")]
    if cached is not None and (cached / "model.safetensors").is_file():
        files = [cached / "model.safetensors"]
    need = sum(f.stat().st_size for f in files if f.exists()) * headroom
    available = psutil.virtual_memory().available
    if need > available:
        raise ModelError(
            f"Not enough memory for {resolved.name}: it needs about {need / 2**30:.1f} GiB, "
            f"{available / 2**30:.1f} GiB is available. Close other programs, or choose a "
            "smaller model (RAG_MODEL / --model)."
        )


def _int8_entry(resolved: ResolvedModel, settings: Settings) -> Path | None:
    """The int8 cache entry that loading would use, if there is one (not yet verified)."""
    try:
        keyed = int8_key(resolved) if int8_cache_enabled() else None
    except (OSError, ValueError, KeyError):
        return None
    folder = int8_folder(settings.model_cache_dir, keyed[0]) if keyed else None
    return folder if folder is not None and folder.is_dir() else None


def _load(settings: Settings) -> _Loaded:
    import torch

    if settings.threads:
        torch.set_num_threads(settings.threads)
    plan = device_plan(settings.device, settings.quantize)
    resolved = resolve_model(settings.model, settings.model_cache_dir)
    if plan.device == "cpu":
        check_memory(resolved, cached=_int8_entry(resolved, settings) if plan.quantize else None)
    for retry in (True, False):
        try:
            loaded = _load_or_cpu(resolved, plan, settings.quantize, Path(settings.model_cache_dir))
            return _Loaded(*loaded, resolved, threading.Lock())
        except RagError:
            raise
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
            if not (retry and resolved.converted):
                raise ModelError(f"could not load model {resolved.name}: {why}") from exc
            discard_converted(Path(resolved.path), f"unloadable ({why})")  # verified, yet broken
            resolved = resolve_model(settings.model, settings.model_cache_dir)
    raise AssertionError("unreachable")


def _make_control(stop: threading.Event) -> Any:
    """A StoppingCriteria that stops on ``stop`` and notes when each new token arrives."""
    import torch
    from transformers import StoppingCriteria

    class Control(StoppingCriteria):
        first: float | None = None
        last: float | None = None
        count = 0

        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
            self.last = time.perf_counter()
            self.first = self.first or self.last
            self.count += 1
            return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

        def timing(self, prompt_tokens: int, t0: float) -> TimingInfo:
            info = TimingInfo(prompt_tokens, new_tokens=self.count, total_seconds=time.perf_counter() - t0)
            if self.first is not None and self.last is not None:
                info.time_to_first_token = self.first - t0
                if self.count > 1 and self.last > self.first:
                    info.decode_tokens_per_s = (self.count - 1) / (self.last - self.first)
            return info

    return Control()


class TransformersGenerator:
    """The local generator (see :class:`~rag.generation.base.Generator`), built from
    :class:`Settings`."""

    _cache: dict[tuple, _Loaded] = {}
    _cache_lock = threading.Lock()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.last_timing: TimingInfo | None = None
        self._assistant: TransformersGenerator | None = None
        self._key = (settings.model, settings.device, settings.quantize, str(settings.model_cache_dir))

    def load(self) -> "TransformersGenerator":
        """Load (once per process) now instead of on first use."""
        self._loaded()
        return self

    def _loaded(self) -> _Loaded:
        lm = self._cache.get(self._key)
        if lm is None:
            with self._cache_lock:  # concurrent first calls wait for one load
                lm = self._cache.get(self._key)
                if lm is None:
                    lm = self._cache[self._key] = run_on_compute_thread(_load, self.settings)
        return lm

    @property
    def name(self) -> str:
        lm = self._cache.get(self._key)
        return lm.resolved.name if lm else self.settings.model

    @property
    def is_loaded(self) -> bool:
        return self._key in self._cache

    @property
    def device(self) -> str:
        """The device in use once loaded (e.g. "cpu (int8)"); before that, the request."""
        lm = self._cache.get(self._key)
        return lm.device if lm else f"{self.settings.device} (not loaded)"

    @property
    def model(self) -> Any:
        return self._loaded().model

    @property
    def tokenizer(self) -> Any:
        return self._loaded().tokenizer

    def _encode(self, lm: _Loaded, messages: list[dict]) -> Any:
        import torch

        return torch.tensor([self._prompt_ids(lm, messages)], dtype=torch.long, device=lm.model.device)

    @staticmethod
    def _prompt_ids(lm: _Loaded, messages: list[dict]) -> list[int]:
        tok = lm.tokenizer
        if not getattr(tok, "chat_template", None):
            raise ModelError(f"model {lm.resolved.name} has no chat template; use an instruct/chat model")
        # Message text is data: "<|im_start|>" in an abstract must not become a turn marker.
        messages = escaped_messages(messages, tok.get_added_vocab())
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)  # some return a BatchEncoding anyway

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        """The token ids the model reads for ``messages``: the chat template applied to the
        messages, whose text is escaped so that it never yields a control token."""
        return self._prompt_ids(self._loaded(), messages)

    @staticmethod
    def _eos_ids(lm: _Loaded) -> list[int] | None:
        tok, cfg = lm.tokenizer, lm.model.generation_config
        eos = cfg.eos_token_id if isinstance(cfg.eos_token_id, list) else [cfg.eos_token_id]
        return [e for e in {*eos, tok.eos_token_id} if e is not None] or None

    def _gen_kwargs(self, lm: _Loaded, input_ids: Any, max_new_tokens: int | None) -> dict:
        tok, eos = lm.tokenizer, self._eos_ids(lm)
        pad = tok.pad_token_id if tok.pad_token_id is not None else (eos or [None])[0]
        kwargs = dict(input_ids=input_ids, attention_mask=input_ids.new_ones(input_ids.shape),
                      max_new_tokens=max_new_tokens or self.settings.max_new_tokens, do_sample=False,
                      temperature=None, top_p=None, top_k=None, repetition_penalty=REPETITION_PENALTY,
                      eos_token_id=eos, pad_token_id=pad)
        if assistant := self.assistant:
            kwargs["assistant_model"] = assistant.model  # assisted generation
        return kwargs

    @property
    def assistant(self) -> "TransformersGenerator | None":
        """The draft model of assisted generation (``Settings.draft_model``), loaded on first use."""
        if not self.settings.draft_model:
            return None
        if self._assistant is None:
            self._assistant = TransformersGenerator(self.settings.with_overrides(
                model=self.settings.draft_model, draft_model=""))
        return self._assistant

    def count_tokens(self, messages: list[dict]) -> int:
        return int(self._encode(self._loaded(), messages).shape[1])

    def stream(self, messages: list[dict], max_new_tokens: int | None = None, *,
               stop: threading.Event | None = None) -> Iterator[str]:
        """Yield the answer's text pieces as they are decoded (greedy). Closing the iterator
        early (``break``) stops the generation at the next token, and so does setting ``stop``
        from any thread, even while no piece is due (a word still being spelled out)."""
        lm = self._loaded()  # first: transformers' lazy names are not safe to import while
        import torch  # another thread loads the model (an ImportError of TextIteratorStreamer)
        from transformers import TextIteratorStreamer

        with lm.lock:
            t0 = time.perf_counter()
            input_ids = self._encode(lm, messages)
            stop, failure = stop if stop is not None else threading.Event(), []
            control = _make_control(stop)
            streamer = TextIteratorStreamer(lm.tokenizer, skip_prompt=True, skip_special_tokens=True)
            kwargs = self._gen_kwargs(lm, input_ids, max_new_tokens)

            @torch.inference_mode()
            def work() -> None:
                try:
                    lm.model.generate(**kwargs, streamer=streamer, stopping_criteria=[control])
                except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
                    failure.append(exc)
                    streamer.end()

            done = submit(work)  # on the one thread that runs torch (see rag.compute_thread)
            try:
                for piece in streamer:
                    if piece:
                        yield piece
            finally:
                stop.set()
                wait([done])
                self.last_timing = control.timing(int(input_ids.shape[1]), t0)
            if failure:
                exc = failure[0]
                raise ModelError(f"generation failed: {type(exc).__name__}: {exc}") from exc

    def generate(self, messages: list[dict], max_new_tokens: int | None = None) -> str:
        return "".join(self.stream(messages, max_new_tokens))

    def bare_generate(self, messages: list[dict], max_new_tokens: int | None = None) -> tuple[str, float, int]:
        """Benchmark baseline: plain ``model.generate`` on the same prompt, no streamer, no
        stopping criteria, timed inside the compute thread (where torch always runs, see
        ``rag.compute_thread``). Returns (text, seconds, new tokens); ``last_timing`` is left
        alone."""
        import torch

        lm = self._loaded()

        @torch.inference_mode()
        def bare() -> tuple[Any, float]:
            t0 = time.perf_counter()
            out = lm.model.generate(**self._gen_kwargs(lm, input_ids, max_new_tokens))
            return out, time.perf_counter() - t0

        with lm.lock:
            input_ids = self._encode(lm, messages)
            out, seconds = run_on_compute_thread(bare)
        new = out[0, input_ids.shape[1]:]
        return lm.tokenizer.decode(new, skip_special_tokens=True), seconds, int(new.shape[0])

    def next_token(self, messages: list[dict], top_n: int = 0) -> NextToken:
        """The reply's first token as ``stream`` picks it (greedy, after the repetition
        penalty) and the ``top_n`` likeliest first tokens, with their log-probabilities."""
        lm = self._loaded()  # before transformers' names: see stream
        import torch
        from transformers import RepetitionPenaltyLogitsProcessor

        input_ids, eos = self._encode(lm, messages), set(self._eos_ids(lm) or [])

        @torch.inference_mode()
        def first_token() -> NextToken:
            logits = lm.model(input_ids=input_ids).logits[:, -1].float()
            logprobs = torch.log_softmax(logits[0], dim=-1)
            choice = int(RepetitionPenaltyLogitsProcessor(REPETITION_PENALTY)(input_ids, logits)[0].argmax())
            top = torch.topk(logprobs, max(top_n, 1)).indices.tolist()[:top_n]

            def option(i: int) -> TokenOption:
                return TokenOption(lm.tokenizer.decode([i]), float(logprobs[i]))

            end = choice in eos
            return NextToken(option(choice), "" if end else lm.tokenizer.decode([choice], skip_special_tokens=True),
                             end, [option(i) for i in top], int(input_ids.shape[1]))

        with lm.lock:  # taken here: the compute thread never waits for a lock
            return run_on_compute_thread(first_token)

    def yes_probability(self, messages: list[dict]) -> float:
        """P("Yes") / (P("Yes") + P("No")) for the next token of the assistant's reply."""
        import torch

        lm = self._loaded()
        yes, no = ({ids[0] for w in words if (ids := lm.tokenizer.encode(w, add_special_tokens=False))}
                   for words in (YES_WORDS, NO_WORDS))
        yes, no = yes - no, no - yes  # a token shared by both says nothing
        if not yes or not no:
            return 0.5
        input_ids = self._encode(lm, messages)

        @torch.inference_mode()
        def yes_no() -> tuple[float, float]:
            probs = torch.softmax(lm.model(input_ids=input_ids).logits[0, -1].float(), dim=-1)
            return float(probs[list(yes)].sum()), float(probs[list(no)].sum())

        with lm.lock:
            p_yes, p_no = run_on_compute_thread(yes_no)
        return p_yes / (p_yes + p_no) if p_yes + p_no > 0 else 0.5

