"""Start the citewise web app: ``python app.py``, then open http://127.0.0.1:7860.

Binds to 127.0.0.1 by default. Serving on another address (or with ``--share``) needs a
login from ``CITEWISE_USER``/``CITEWISE_PASSWORD``, unless ``--no-auth`` says otherwise.
A missing index is built from the seed corpus on first start. The index and the embedder
load before the page is served; the generator loads in the background meanwhile, and a
question asked before it is ready waits for it. If it cannot load, the app says why and exits.
"""

from __future__ import annotations

import argparse
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


def load_model(pipeline) -> None:  # noqa: ANN001
    """Load the generator (run in a thread while the page is served); exit if it cannot."""
    print("Loading the model in the background…", flush=True)
    try:
        pipeline.warm_up()
    except Exception as exc:  # noqa: BLE001 - whatever stops the model, say it and stop
        print(f"error: {exc}", file=sys.stderr, flush=True)
        os._exit(1)  # an app that cannot answer is no use; the message says what to do
    print(f"Model {pipeline.generator.name} ready on {pipeline.generator.device}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    auth = resolve_auth(args.host, args.share, args.no_auth)
    from rag import Pipeline, RagError, Settings  # sets the offline defaults first

    try:
        settings = Settings().with_overrides(index_dir=args.index_dir, model=args.model, device=args.device)
        ensure_index(settings)
        pipeline = Pipeline(settings)
        pipeline.warm_up(model=False)
        threading.Thread(target=load_model, args=(pipeline,), name="model-loader", daemon=True).start()
        from rag.ui import Login, build_app, launch_options

        demo = build_app(pipeline)
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
    demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
