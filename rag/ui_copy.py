"""The app's "Copy as Markdown" button, above the source cards: one click copies the answer
on show with its references, exactly as ``export.to_markdown`` writes them (what
``python -m rag ask --format markdown`` prints), to the clipboard.

The Markdown travels with the source cards (``ChatUI.stream_chat`` yields it when it shows
an answer) into a text box kept in the page but out of sight. The button is disabled until
that box holds an answer; a click copies it in the browser and says "Copied ✓" for a moment.
Where the browser refuses the clipboard (the app over plain http from another machine, or
embedded in a page that does not allow it the clipboard) the click shows the box instead,
the Markdown selected, to copy by hand.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr

__all__ = ["COPIED_LABEL", "COPY_LABEL", "cleared", "copy_button", "markdown_box"]

COPY_LABEL = "Copy as Markdown"
COPIED_LABEL = "Copied ✓"
BOX_LABEL = "The answer as Markdown (the browser did not allow copying: select it and copy it here)"
COPIED_FOR_MS = 1500
#: The button follows the box: enabled once it holds an answer's Markdown.
ENABLE_JS = "(markdown) => ({__type__: 'update', interactive: Boolean(markdown)})"
#: The click: the Markdown to the clipboard and the button saying so, or the box shown with
#: the Markdown selected (``navigator.clipboard`` is missing outside a secure page).
COPY_JS = f"""async (markdown) => {{
  try {{
    await navigator.clipboard.writeText(markdown);
    return [{json.dumps(COPIED_LABEL, ensure_ascii=False)}, undefined];
  }} catch (error) {{
    setTimeout(() => {{
      const box = document.querySelector("#cw-markdown textarea");
      if (box) {{ box.focus(); box.select(); }}
    }}, 100);
    return [undefined, {{__type__: "update", visible: true}}];
  }}
}}"""
RESTORE_JS = (f"() => new Promise((done) => setTimeout(() => done({json.dumps(COPY_LABEL)}), "
              f"{COPIED_FOR_MS}))")


def markdown_box() -> gr.Textbox:
    """The answer's Markdown, an output of the chat (rendered by ``copy_button``)."""
    import gradio as gr

    return gr.Textbox("", label=BOX_LABEL, visible="hidden", interactive=True, lines=4,
                      max_lines=16, elem_id="cw-markdown", render=False)


def copy_button(markdown: gr.Textbox) -> gr.Button:
    """The button, and ``markdown`` under it, wired to each other in the page (no server call)."""
    import gradio as gr

    private = {"api_visibility": "private", "queue": False}
    button = gr.Button(COPY_LABEL, size="sm", interactive=False, elem_id="cw-copy")
    markdown.render()
    markdown.change(None, markdown, button, js=ENABLE_JS, **private)
    button.click(None, markdown, [button, markdown], js=COPY_JS, **private).then(
        None, None, button, js=RESTORE_JS, **private)
    return button


def cleared() -> dict:
    """The box's update when the chat is cleared: empty (the button disabled) and out of sight."""
    import gradio as gr

    return gr.update(value="", visible="hidden")
