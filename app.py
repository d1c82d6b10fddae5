"""Start the citewise web app: ``python app.py``, then open http://127.0.0.1:7860.

Binds to 127.0.0.1 by default. Serving on another address (or with ``--share``) needs a
login from ``CITEWISE_USER``/``CITEWISE_PASSWORD``, unless ``--no-auth`` says otherwise.
A missing index is built from the seed corpus on first start. Then the page is served at once
(a few seconds after start: only Gradio is imported before); the index is opened and checked,
and the embedder and the generator loaded, in the background after that, and a question
asked meanwhile waits for them, saying so. If any of it fails, the app says why and exits.
The line "citewise is running at URL" marks the page being served.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.util
import ipaddress
import os
import sys
import threading
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Serve citewise: cited answers from research-paper abstracts, in the browser."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    parser.add_argument("--no-auth", action="store_true",
                        help="serve a non-local address without a login (not recommended)")
    parser.add_argument("--index-dir", type=Path, help="index folder (default: ./index)")
    parser.add_argument("--model", help="generator model (default: the bundled 0.5B model)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="default: auto")
    return parser.parse_args(argv)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_auth(host: str, share: bool, no_auth: bool) -> tuple[str, str] | None:
    """The login to require, from the environment; ``SystemExit`` when one is needed and unset."""
    user, password = os.environ.get("CITEWISE_USER"), os.environ.get("CITEWISE_PASSWORD")
    if user and password:
        return user, password
    if (is_loopback(host) and not share) or no_auth:
        return None
    where = "a public share link" if share else f"address {host}"
    raise SystemExit(
        f"error: serving on {where} needs a login: set CITEWISE_USER and CITEWISE_PASSWORD, "
        "or pass --no-auth to serve it without one."
    )


def index_folder_exists(settings) -> bool:  # noqa: ANN001
    """Whether a local index folder holds a Chroma database: a check that opens nothing (the
    index is opened, and checked, after the page is served)."""
    return not settings.chroma_url and (Path(settings.index_dir) / "chroma.sqlite3").is_file()


def ensure_index(settings) -> None:  # noqa: ANN001
    """Build the index from the configured corpus when there is none yet."""
    from rag.errors import StoreError
    from rag.store import PaperIndex

    try:
        if PaperIndex(settings).count() > 0:
            return
    except StoreError:
        if settings.chroma_url or (Path(settings.index_dir) / "chroma.sqlite3").exists():
            raise  # unreadable or built with other settings: its message says what to do
    from rag.ingest import ingest

    print(f"No index at {settings.index_dir} yet: building it (first start only)…", flush=True)
    report = ingest(settings, progress=True)
    print(f"Index ready: {report.summary()}", flush=True)


def load_models(pipeline, ready: threading.Event) -> None:  # noqa: ANN001
    """Check the index (building it if it is empty), load the embedder (then set ``ready``)
    and the generator: in a thread, while the page is served. Exit if any of it fails."""
    print("Loading the models in the background…", flush=True)
    try:
        ensure_index(pipeline.settings)
        pipeline.warm_up(model=False)
        ready.set()
        load = getattr(pipeline.generator, "load", None)
        if load:
            load()
    except Exception as exc:  # noqa: BLE001 - whatever stops the app answering, say it and stop
        print(f"error: {exc}", file=sys.stderr, flush=True)
        os._exit(1)  # an app that cannot answer is no use; the message says what to do
    print(f"Model {pipeline.generator.name} ready on {pipeline.generator.device}", flush=True)


class _NoStubRewrites(importlib.abc.MetaPathFinder):
    """Gradio re-parses the source of each of its components and rewrites their ``.pyi`` type
    stubs on every import (``gradio.component_meta.create_or_modify_pyi``): about 2 s of its 4 s
    import here, for files that only editors read. This finder turns that step off in the app
    when ``gradio.component_meta`` is first imported."""

    def find_spec(self, name: str, path=None, target=None):  # noqa: ANN001, ANN201
        if name != "gradio.component_meta":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module if spec and spec.loader else None
        if run is None:
            return spec

        def exec_module(module) -> None:  # noqa: ANN001
            run(module)
            module.create_or_modify_pyi = lambda *args, **kwargs: None

        spec.loader.exec_module = exec_module
        return spec


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    auth = resolve_auth(args.host, args.share, args.no_auth)
    if "gradio" not in sys.modules:
        sys.meta_path.insert(0, _NoStubRewrites())
    from rag import RagError, Settings  # sets the offline defaults first

    try:
        settings = Settings().with_overrides(index_dir=args.index_dir, model=args.model, device=args.device)
        if not index_folder_exists(settings):  # first start (or a Chroma server): build or check it now
            ensure_index(settings)
        from rag.pipeline import Pipeline
        from rag.ui import Login, build_app, launch_options

        pipeline, ready = Pipeline(settings), threading.Event()
        demo = build_app(pipeline, ready=ready)
    except (RagError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if auth is None and not is_loopback(args.host):
        print(f"warning: serving {args.host} with no login (--no-auth)", file=sys.stderr)
    try:
        _, url, share_url = demo.launch(
            server_name=args.host, server_port=args.port, share=args.share,
            auth=Login(*auth) if auth else None,
            prevent_thread_lock=True, quiet=True, **launch_options(),
        )
    except OSError as exc:
        print(f"error: cannot serve on {args.host}:{args.port} ({exc}); try --port", file=sys.stderr)
        return 1
    print(f"citewise is running at {url}" + (f" (public: {share_url})" if share_url else ""), flush=True)
    threading.Thread(target=load_models, args=(pipeline, ready), name="model-loader", daemon=True).start()
    demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
