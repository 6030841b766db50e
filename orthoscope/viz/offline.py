"""Animation players that work offline: matplotlib's ``to_jshtml`` player without its CDN stylesheet.

matplotlib's player links Font Awesome 4.4 from ``maxcdn.bootstrapcdn.com`` for its nine button icons. A notebook or
report without network access then shows empty buttons, and a page that is opened sends a request off the machine.
``offline_html`` removes every external stylesheet link and replaces each ``<i class="fa fa-…"></i>`` icon with a
plain Unicode glyph (the buttons keep their ``title`` tooltips and ``onclick`` handlers), then checks that no
external URL is left: ``external_urls`` looks at ``src=``, ``href=``, CSS ``url(...)`` and ``@import``. Addresses on
this machine (127.0.0.1, localhost) are allowed. The result is idempotent: cleaning clean HTML changes nothing.
"""
from __future__ import annotations

import re

# matplotlib's Font Awesome icon classes (matplotlib/_animation_data.py) → text glyphs in every common font.
ICONS = {
    "fa-minus": "\u2212",                   # slower
    "fa-plus": "+",                         # faster
    "fa-fast-backward": "|\u25C0\u25C0",    # first frame
    "fa-step-backward": "|\u25C0",          # previous frame
    "fa-play fa-flip-horizontal": "\u25C0",  # play backwards
    "fa-pause": "\u275A\u275A",             # pause
    "fa-play": "\u25B6",                    # play
    "fa-step-forward": "\u25B6|",           # next frame
    "fa-fast-forward": "\u25B6\u25B6|",     # last frame
}
ICON_STYLE = ('<style>.anim-buttons .anim-icon { font-style: normal; display: inline-block; min-width: 1.6em; '
              'font-family: system-ui, sans-serif; }</style>')

_ICON = re.compile(r'<i\s+class="fa\s+([^"]+?)"\s*>\s*</i>')
_EXTERNAL_STYLESHEET = re.compile(r"<link\b[^>]*?href\s*=\s*[\"']?(?:https?:)?//[^>]*>", re.S | re.I)
_URL = re.compile(r"""(?:\b(?:src|href)\s*=\s*["']?|url\(\s*["']?|@import\s+["']?)((?:https?:)?//[^\s"')>]+)""",
                  re.I)
_LOCAL = re.compile(r"^(?:https?:)?//(?:127\.0\.0\.1|localhost)(?:[:/]|$)", re.I)


def external_urls(html: str) -> list[str]:
    """Every URL in ``src=``, ``href=``, ``url(...)`` or ``@import`` that points off this machine."""
    return [u for u in _URL.findall(html) if not _LOCAL.match(u)]


def _icon(match: re.Match) -> str:
    classes = match.group(1).strip()
    if classes not in ICONS:
        raise ValueError(f"unknown animation-player icon {classes!r}; known: {sorted(ICONS)} (a matplotlib upgrade "
                         "changed its player template: add the new icon to orthoscope.viz.offline.ICONS)")
    return f'<span class="anim-icon" aria-hidden="true">{ICONS[classes]}</span>'


def offline_html(html: str) -> str:
    """``html`` (e.g. ``anim.to_jshtml()``) with the CDN stylesheet removed and the icons drawn as text; raises if
    an external URL remains, so a page that would reach the network is never produced silently."""
    cleaned, n_icons = _ICON.subn(_icon, _EXTERNAL_STYLESHEET.sub("", html))
    if n_icons and ICON_STYLE not in cleaned:
        cleaned = ICON_STYLE + cleaned
    left = external_urls(cleaned)
    if left:
        raise ValueError(f"the HTML still loads {len(left)} external resource(s): {left[:3]} — it would not work "
                         "offline")
    return cleaned


__all__ = ["offline_html", "external_urls", "ICONS"]
