"""Outputs of the sandbox made safe to show: no script, no remote loads, no terminal control sequences.

Outputs the user's kernel republishes (and cells the extension inserts while the notebook is open) are trusted
by JupyterLab, so anything that can run script would run in the Jupyter origin, next to its REST API and the
user's kernels. And anything the browser fetches from elsewhere (an ``<img src="https://…?data">``) would carry
data out of a sandbox that has no network. Every output bundle therefore passes through :func:`mime_bundle`:

- an allow-list of MIME types: script-carrying types (``application/javascript``, Bokeh/HoloViews exec
  bundles, widget views of the sandbox's kernel) and unknown types are dropped, with a note;
- ``text/html`` is cleaned by ``nh3`` (the Rust ``ammonia`` sanitiser): no script, no event handlers, no
  ``<style>``, images only from ``data:`` URLs, links opened with ``noopener``;
- ``text/markdown`` is cleaned the same way and loses images from remote URLs;
- ``image/svg+xml`` is kept only without script, event handlers, ``foreignObject`` or remote references;
- JSON bundles (Plotly, Vega) lose keys that make the browser fetch a remote URL.

:func:`terminal_text` removes control sequences (colours included) from text a terminal will print: the CLI
prints model-written code and sandbox output, and escape sequences can rewrite the terminal or its clipboard.
"""

from __future__ import annotations

import re
from typing import Any

import nh3

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
_REMOTE_IMAGE_MD = re.compile(r"!\[([^\]]*)\]\((?!data:)[^)]*\)")
_SVG_DANGER = re.compile(
    r"<\s*script|\bon[a-z]+\s*=|javascript:|<\s*foreignObject|(?:xlink:)?href\s*=\s*[\"']?\s*(?:https?:)?//"
    r"|url\(\s*[\"']?\s*(?:https?:)?//|@import",
    re.I,
)
_FETCHING_KEYS = frozenset({"url", "source", "src", "href", "image"})
_REMOTE = re.compile(r"^\s*(?:https?:)?//", re.I)
#: CSI, OSC (up to BEL or ST), other ESC sequences, then remaining C0/C1 controls except tab and newline.
_TERMINAL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[PX^_][^\x1b]*(?:\x1b\\)?|\x1b.?"
    r"|[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]"
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
            if not (k in _FETCHING_KEYS and isinstance(v, str) and _REMOTE.match(v))
        }
    if isinstance(value, list):
        return [_strip_fetches(v, depth + 1) for v in value]
    return value


def mime_bundle(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The safe part of an output's data, and the MIME types that were dropped."""
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for mime, value in data.items():
        if mime in TEXT_TYPES or mime in IMAGE_TYPES:
            kept[mime] = value
        elif mime == "text/html" and isinstance(value, str | list):
            kept[mime] = clean_html(value if isinstance(value, str) else "".join(value))
        elif mime == "text/markdown" and isinstance(value, str | list):
            text = value if isinstance(value, str) else "".join(value)
            kept[mime] = clean_html(_REMOTE_IMAGE_MD.sub(r"\1", text))
        elif mime == "image/svg+xml" and isinstance(value, str | list):
            svg = value if isinstance(value, str) else "".join(value)
            if _SVG_DANGER.search(svg):
                dropped.append(mime)
            else:
                kept[mime] = svg
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


def terminal_text(text: str) -> str:
    """``text`` without escape sequences or control characters (newlines and tabs kept)."""
    return _TERMINAL.sub("", text)
