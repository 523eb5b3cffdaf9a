"""Outputs of the sandbox made safe to show: no script, no remote loads, no terminal control sequences.

Outputs the user's kernel republishes (and cells the extension inserts while the notebook is open) are trusted
by JupyterLab, so anything that can run script would run in the Jupyter origin, next to its REST API and the
user's kernels. And anything the browser fetches from elsewhere (an ``<img src="https://…?data">``) would carry
data out of a sandbox that has no network. Every output bundle therefore passes through :func:`mime_bundle`:

- an allow-list of MIME types: script-carrying types (``application/javascript``, Bokeh/HoloViews exec
  bundles, widget views of the sandbox's kernel) and unknown types are dropped, with a note;
- ``text/html`` is cleaned by ``nh3`` (the Rust ``ammonia`` sanitiser): no script, no event handlers, no
  ``<style>``, images only from ``data:`` URLs, links opened with ``noopener``;
- ``text/markdown`` is rendered to HTML here (CommonMark, by ``markdown-it-py``) and cleaned the same way, so
  it is shown as ``text/html``: reference-style images, ``javascript:`` links and autolinks are judged on the
  HTML they become, never by patterns over the markdown;
- ``image/svg+xml`` is parsed and rebuilt from an allow-list (``svg.py``);
- JSON bundles (Plotly, Vega) lose every key that makes the browser fetch or open a URL, unless its value is a
  plain ``data:`` URL: a field, signal or expression there could build any URL.

:func:`terminal_text` removes control sequences (colours included) from text a terminal will print: the CLI
prints model-written code and sandbox output, and escape sequences can rewrite the terminal or its clipboard.
:func:`shown_text` is what every text output of the sandbox keeps (streams, errors, ``text/plain``): colours
(SGR) and the line controls progress bars use, nothing else — a terminal IPython prints ``%%ask``'s outputs
as they are, and an OSC sequence there sets the clipboard or the window title.
"""

from __future__ import annotations

import re
from typing import Any

import nh3
from markdown_it import MarkdownIt

from .svg import UnsafeSvg, clean_svg

TEXT_TYPES = frozenset({"text/plain", "text/latex", "application/json"})
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"})
JSON_TYPES_PREFIXES = (
    "application/vnd.plotly.v1+json",
    "application/vnd.vegalite.v",
    "application/vnd.vega.v",
    "application/vnd.dataresource+json",
    "application/geo+json",
)
ALLOWED_TAGS = (
    nh3.ALLOWED_TAGS
    | {"table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption", "colgroup", "col", "img", "details"}
    | {"summary", "span", "div", "pre", "code", "sup", "sub", "hr", "br", "small"}
)
_ATTRS = {"class", "title", "colspan", "rowspan", "align", "valign", "width", "height", "style", "id"}
ALLOWED_ATTRIBUTES = {tag: set(_ATTRS) for tag in ALLOWED_TAGS} | {
    "img": _ATTRS | {"src", "alt"},
    "a": _ATTRS | {"href"},
}
#: Inline CSS properties kept (none of them can load a URL).
STYLE_PROPERTIES = {
    "color",
    "background-color",
    "text-align",
    "vertical-align",
    "font-weight",
    "font-style",
    "font-size",
    "font-family",
    "white-space",
    "width",
    "height",
    "min-width",
    "max-width",
    "padding",
    "margin",
    "border",
    "border-collapse",
    "border-bottom",
    "border-top",
    "opacity",
    "display",
}
#: Keys whose value a chart library fetches or opens as a URL ("source": Plotly's layout images; "usermeta":
#: vega-embed reads its loader options from there).
_FETCHING_KEYS = frozenset({"url", "source", "src", "href", "image", "usermeta"})
_DATA_URL = re.compile(r"^\s*data:", re.I)
_MARKDOWN = MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough")
#: CSI, OSC (up to BEL or ST), other ESC sequences, then remaining C0/C1 controls except tab and newline.
_TERMINAL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[PX^_][^\x1b]*(?:\x1b\\)?|\x1b.?"
    r"|[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]"
)


#: Every escape sequence but SGR (colours: ESC [ digits/semicolons m), and controls but \t \n \r \b.
_NOT_SHOWN = re.compile(
    r"\x1b\[(?![0-9;]*m)[0-?]*[ -/]*[@-~]|\x1b\[[0-?]*[ -/]*\Z"  # an unfinished one could end in the next chunk
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b(?!\[)[\s\S]?|[\x00-\x07\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f\x80-\x9f]"
)


def _url_allowed(tag: str, attribute: str, value: str) -> str | None:
    if tag == "img" and attribute == "src":
        return value if value.strip().lower().startswith("data:image/") else None
    return value


def clean_html(html: str) -> str:
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto", "data"},
        attribute_filter=_url_allowed,
        filter_style_properties=STYLE_PROPERTIES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


def _strip_fetches(value: Any, depth: int = 0) -> Any:
    if depth > 64:
        return None
    if isinstance(value, dict):
        return {
            k: _strip_fetches(v, depth + 1)
            for k, v in value.items()
            if k not in _FETCHING_KEYS or _inert_reference(k, v)
        }
    if isinstance(value, list):
        return [_strip_fetches(v, depth + 1) for v in value]
    return value


def _inert_reference(key: str, value: Any) -> bool:
    """A fetching key kept: a ``data:`` URL, or (Vega's "source", another dataset's name) a bare name."""
    if not isinstance(value, str):
        return False  # {"field": …}, {"signal": …}, {"expr": …}: any URL could come out of it
    if _DATA_URL.match(value):
        return True
    return key == "source" and re.fullmatch(r"[A-Za-z_][\w-]*", value) is not None


def markdown_html(text: str) -> str:
    """Markdown rendered to cleaned HTML."""
    return clean_html(_MARKDOWN.render(text))


def mime_bundle(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The safe part of an output's data, and the MIME types that were dropped."""
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for mime, value in data.items():
        if mime in ("text/plain", "text/latex") and isinstance(value, str):
            kept[mime] = shown_text(value)
        elif mime in TEXT_TYPES or mime in IMAGE_TYPES:
            kept[mime] = value
        elif mime == "text/html" and isinstance(value, str | list):
            kept[mime] = clean_html(value if isinstance(value, str) else "".join(value))
        elif mime == "text/markdown" and isinstance(value, str | list):
            if "text/html" not in data:  # shown as the HTML it renders to, never re-read as markdown
                kept["text/html"] = markdown_html(value if isinstance(value, str) else "".join(value))
        elif mime == "image/svg+xml" and isinstance(value, str | list):
            try:
                kept[mime] = clean_svg(value if isinstance(value, str) else "".join(value))
            except UnsafeSvg:
                dropped.append(mime)
        elif mime.startswith(JSON_TYPES_PREFIXES):
            kept[mime] = _strip_fetches(value)
        else:
            dropped.append(mime)
    if not kept and dropped:
        kept["text/plain"] = (
            f"[output of type {', '.join(dropped)} removed: it could run script in your browser]"
        )
    return kept, dropped


def metadata(meta: dict[str, Any], kept: dict[str, Any]) -> dict[str, Any]:
    """Output metadata for the kept types only (JupyterLab reads image sizes and a few flags from it)."""
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if key in kept and isinstance(value, dict):
            out[key] = {k: v for k, v in value.items() if k in ("width", "height", "unconfined", "isolated")}
        elif key in ("needs_background", "isolated") and isinstance(value, bool | str):
            out[key] = value
    return out


def shown_text(text: str) -> str:
    """``text`` with only colour sequences and tab, newline, carriage return and backspace as controls."""
    return _NOT_SHOWN.sub("", text)


def terminal_text(text: str) -> str:
    """``text`` without escape sequences or control characters (newlines and tabs kept)."""
    return _TERMINAL.sub("", text)
