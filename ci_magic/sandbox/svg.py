"""SVG from the sandbox, parsed and rebuilt from an allow-list: what a browser could run or fetch never stays.

An SVG shown in the notebook is a document the browser runs: ``<script>`` under any namespace prefix, event
handlers, ``<foreignObject>`` (HTML inside), links and ``<image>``/``<use>``/``<feImage>`` that load other
URLs, and CSS ``url()``/``@import``. Regular expressions over the text miss spellings (``<s:script>``,
entity-encoded URLs, comments between tokens), so the text is parsed with ``defusedxml`` (no DTD, no entity
expansion, no external references) and only SVG elements and presentation attributes on the list are kept;
every reference must point inside the document (``#id``) or be a ``data:image/`` URL. What cannot be parsed is
dropped whole.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
XML_NS = "http://www.w3.org/XML/1998/namespace"
#: Drawing elements (what matplotlib, seaborn, graphviz and plotly's static export write); no script,
#: foreignObject, animation (it can set href), or a (i)frame-like element.
ELEMENTS = frozenset(
    {
        "svg", "g", "defs", "symbol", "use", "title", "desc", "path", "rect", "circle", "ellipse", "line",
        "polyline", "polygon", "text", "tspan", "textPath", "clipPath", "mask", "marker", "pattern", "image",
        "linearGradient", "radialGradient", "stop", "filter", "feBlend", "feColorMatrix", "feComponentTransfer",
        "feComposite", "feFlood", "feGaussianBlur", "feMerge", "feMergeNode", "feOffset", "feFuncR", "feFuncG",
        "feFuncB", "feFuncA", "feMorphology", "feTile", "feTurbulence", "style", "switch", "a",
    }
)  # fmt: skip
#: Attributes that name another resource: kept only for ``#id`` or a ``data:image/`` URL.
REFERENCES = frozenset({"href", f"{{{XLINK_NS}}}href", "src"})
_LOCAL_OR_DATA = re.compile(r"^\s*(#|data:image/)", re.I)
#: In CSS (``style`` attributes and elements, presentation attributes): what loads or hides something.
_CSS_DANGER = re.compile(r"@import|expression\s*\(|\\|url\s*\(\s*['\"]?\s*(?!#)", re.I)
MAX_ELEMENTS = 200_000


class UnsafeSvg(ValueError):
    """The SVG could not be parsed safely (malformed, a DTD or entities, or too large)."""


def clean_svg(text: str) -> str:
    """The SVG with only listed elements and safe attributes (UnsafeSvg when it cannot be parsed)."""
    try:
        root = fromstring(text.encode("utf-8", "replace"), forbid_dtd=True)
    except (ET.ParseError, DefusedXmlException, ValueError) as exc:
        raise UnsafeSvg(f"the SVG could not be parsed safely ({type(exc).__name__})") from None
    if _local(root.tag) != "svg" or _namespace(root.tag) not in ("", SVG_NS):
        raise UnsafeSvg("the document is not an SVG")
    if sum(1 for _ in root.iter()) > MAX_ELEMENTS:
        raise UnsafeSvg("the SVG has too many elements")
    _clean(root)
    ET.register_namespace("", SVG_NS)
    ET.register_namespace("xlink", XLINK_NS)
    return ET.tostring(root, encoding="unicode")


def _clean(element: ET.Element) -> None:
    for name in list(element.attrib):
        if not _attribute_allowed(name, element.attrib[name]):
            del element.attrib[name]
    if _local(element.tag) == "style" and element.text and _CSS_DANGER.search(element.text):
        element.text = ""
    for child in list(element):
        # Comments and processing instructions have no string tag; other namespaces (XHTML) are not drawing.
        if (
            not isinstance(child.tag, str)
            or _namespace(child.tag) not in ("", SVG_NS)
            or _local(child.tag) not in ELEMENTS
        ):
            element.remove(child)
        else:
            _clean(child)


def _attribute_allowed(name: str, value: str) -> bool:
    namespace, local = _namespace(name), _local(name)
    if namespace not in ("", XLINK_NS, XML_NS) or local.lower().startswith("on"):
        return False
    if name in REFERENCES or local == "href":
        return bool(_LOCAL_OR_DATA.match(value))
    return not _CSS_DANGER.search(value) and "javascript:" not in value.lower()


def _namespace(tag: str) -> str:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]
