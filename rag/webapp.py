"""The citewise web app: the chat, the papers, and the REST API (``rag.rest_api``) on one
server. Start it with ``citewise app`` or ``python app.py``, then open http://127.0.0.1:7860.

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
import importlib.machinery
import importlib.util
import ipaddress
import os
import sys
import threading
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import socket

    import uvicorn

    from rag.config import Settings
    from rag.pipeline import Pipeline


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="citewise app",
        description="Serve citewise: cited answers from research-paper abstracts, in the browser "
        "(the chat at /, the REST API at /api, its documentation at /api/docs).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    parser.add_argument("--no-auth", action="store_true",
                        help="serve a non-local address without a login (not recommended)")
    parser.add_argument("--index-dir", type=Path, help="index folder (default: ./index in a checkout, "
                        "else the user data folder's citewise/index)")
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


def index_folder_exists(settings: Settings) -> bool:
    """Whether a local index folder holds a Chroma database: a check that opens nothing (the
    index is opened, and checked, after the page is served)."""
    return not settings.chroma_url and (Path(settings.index_dir) / "chroma.sqlite3").is_file()


def ensure_index(settings: Settings) -> None:
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


def load_models(pipeline: Pipeline, ready: threading.Event) -> None:
    """Check the index (building it if it is empty), load the embedder (then set ``ready``)
    and the generator: in a thread, while the page is served. Exit if any of it fails."""
    print("Loading the models in the background…", flush=True)
    try:
        ensure_index(pipeline.settings)
        pipeline.warm_up(model=False)
        ready.set()
        pipeline.generator.load()
    except Exception as exc:  # noqa: BLE001 - whatever stops the app answering, say it and stop
        print(f"error: {exc}", file=sys.stderr, flush=True)
        os._exit(1)  # an app that cannot answer is no use; the message says what to do
    print(f"Model {pipeline.generator.name} ready on {pipeline.generator.device}", flush=True)


class _NoStubRewrites(importlib.abc.MetaPathFinder):
    """Gradio re-parses the source of each of its components and rewrites their ``.pyi`` type
    stubs on every import (``gradio.component_meta.create_or_modify_pyi``): about 2 s of its 4 s
    import here, for files that only editors read. This finder turns that step off in the app
    when ``gradio.component_meta`` is first imported."""

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if name != "gradio.component_meta":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module if spec and spec.loader else None
        if run is None:
            return spec

        def exec_module(module: types.ModuleType) -> None:
            run(module)
            module.create_or_modify_pyi = lambda *args, **kwargs: None

        spec.loader.exec_module = exec_module
        return spec


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    auth = resolve_auth(args.host, args.share, args.no_auth)
    if "gradio" not in sys.modules:
        sys.meta_path.insert(0, _NoStubRewrites())
    from rag import RagError, Settings

    try:
        settings = Settings().with_overrides(index_dir=args.index_dir, model=args.model, device=args.device)
        if not index_folder_exists(settings):  # first start (or a Chroma server): build or check it now
            ensure_index(settings)
        from rag.pipeline import Pipeline

        pipeline, ready = Pipeline(settings), threading.Event()
        running = start_server(pipeline, ready, auth, args.host, args.port)
    except (RagError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if auth is None and not is_loopback(args.host):
        print(f"warning: serving {args.host} with no login (--no-auth)", file=sys.stderr)
    share_url = open_share_link(args.host, running.port) if args.share else None
    print(f"citewise is running at {running.url}" + (f" (public: {share_url})" if share_url else ""), flush=True)
    threading.Thread(target=load_models, args=(pipeline, ready), name="model-loader", daemon=True).start()
    running.wait()
    return 0


@dataclass
class RunningApp:
    """The app's server, running on a thread of this process."""

    server: Any  # uvicorn.Server
    thread: threading.Thread
    port: int
    url: str

    def wait(self) -> None:
        """Block until the server stops (Ctrl+C stops it)."""
        try:
            while self.thread.is_alive():
                self.thread.join(0.5)
        except KeyboardInterrupt:
            self.close()

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def start_server(pipeline: Pipeline, ready: threading.Event, auth: tuple[str, str] | None, host: str,
                 port: int) -> RunningApp:
    """Serve the app for ``pipeline`` on ``host:port`` (0: any free port) on a new thread,
    returning once it accepts connections; ``ConfigError`` when it cannot listen there."""
    from rag.errors import ConfigError

    try:
        sock = bind(host, port)
    except OSError as exc:
        raise ConfigError(f"cannot serve on {host}:{port} ({exc}); try another --port") from None
    port = sock.getsockname()[1]
    server = build_server(pipeline, ready, auth, host, port)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="web-server", daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        thread.join(0.05)
    if not server.started:
        raise ConfigError(f"the web server on {host}:{port} did not start (its log says why)")
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else f"[{host}]" if ":" in host else host
    return RunningApp(server, thread, port, f"http://{shown}:{port}/")


def build_server(pipeline: Pipeline, ready: threading.Event, auth: tuple[str, str] | None, host: str,
                 port: int) -> uvicorn.Server:
    """The app's web server, not started: the REST API (``rag.rest_api``) with the Gradio app
    mounted at ``/``, one login (``auth``: user and password) for both, served by uvicorn."""
    import gradio as gr
    import uvicorn

    from rag.rest_api import create_api
    from rag.ui import ChatUI, Login, build_app, launch_options

    login = Login(*auth) if auth else None
    demo = build_app(pipeline, ready=ready)
    api = create_api(ChatUI(pipeline, ready), login=login)
    app = gr.mount_gradio_app(api, demo, path="/", server_name=host, server_port=port,
                              auth=login, **launch_options())
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (``OSError`` when taken), handed to the server."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def open_share_link(host: str, port: int) -> str | None:
    """A temporary public link through Gradio's share servers (needs the network; ``None``,
    with a warning, when it cannot be opened)."""
    import secrets

    from gradio import networking

    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    try:
        return networking.setup_tunnel(local_host=local, local_port=port, share_token=secrets.token_urlsafe(32),
                                       share_server_address=None, share_server_tls_certificate=None)
    except Exception as exc:  # noqa: BLE001 - the app still runs locally
        print(f"warning: no public share link ({exc})", file=sys.stderr, flush=True)
        return None
