"""Offline animation players: no external URL in any HTML the package produces; frames and controls intact;
export_animation / export_png for the Dashboard's export button."""
import re

import numpy as np
import pytest
import torch

from orthoscope import History
from orthoscope.viz import animate
from orthoscope.viz.offline import ICONS, external_urls, offline_html

# Any URL a browser would fetch or follow off this machine: src=, href=, CSS url(), @import — with or without scheme.
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//(?!127\.0\.0\.1|localhost)|"""
                      r"""url\(\s*["']?(?:https?:)?//(?!127\.0\.0\.1|localhost)|@import\s+["']?(?:https?:)?//""", re.I)
BUTTONS = ("Decrease speed", "First frame", "Previous frame", "Play backwards", "Pause", "Play", "Next frame",
           "Last frame", "Increase speed")


def _spectra(n_steps=6, n=5, scale=1.0, every=2):
    h = History()
    for k in range(n_steps):
        h.log(k * every, {"sv/m": torch.linspace(1.0, 0.1, n) * scale * (1 + 0.2 * k)})
    return h


def _check_player(html: str, n_frames: int):
    assert not EXTERNAL.search(html), EXTERNAL.search(html)
    assert "https://" not in html and "http://" not in html
    assert "font-awesome" not in html and 'class="fa' not in html
    assert html.count("data:image/png;base64") == n_frames
    for title in BUTTONS:                                        # every control kept, with its tooltip
        assert f'title="{title}"' in html
    assert html.count('class="anim-icon"') == len(BUTTONS)
    assert "new Animation(frames" in html and 'type="range"' in html


def test_matplotlib_player_is_made_offline():
    html = animate.to_html(animate.spectrum_animation(_spectra(), "m", max_frames=3))
    _check_player(html, 3)
    for glyph in ICONS.values():
        assert glyph in html
    assert offline_html(html) == html                            # idempotent


def test_external_urls_finds_every_kind_and_allows_this_machine():
    page = ('<img src="https://a.example/x.png"><a href=//b.example/y>x</a>'
            "<style>@import 'https://c.example/z.css'; .q { background: url(http://d.example/w.png) }</style>"
            '<script src="http://127.0.0.1:8888/static/lab.js"></script><a href="http://localhost/x">l</a>'
            '<img src="data:image/png;base64,AAAA">')
    assert external_urls(page) == ["https://a.example/x.png", "//b.example/y", "https://c.example/z.css",
                                   "http://d.example/w.png"]
    with pytest.raises(ValueError, match="still loads 4 external resource"):
        offline_html(page)


def test_offline_html_removes_a_multiline_stylesheet_link_and_refuses_unknown_icons():
    html = '<link rel="stylesheet"\nhref="https://cdn.example/x.css">\n<div class="animation"></div>'
    assert offline_html(html) == '\n<div class="animation"></div>'
    with pytest.raises(ValueError, match="unknown animation-player icon 'fa-rocket'"):
        offline_html('<button><i class="fa fa-rocket"></i></button>')


def test_export_animation_one_run_and_a_comparison(tmp_path):
    path = animate.export_animation(_spectra(), "m", tmp_path / "out" / "one.html", max_frames=4)
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "Singular values of m over training" in page
    _check_player(page, 4)
    a, b = _spectra(n_steps=4, every=2), _spectra(n_steps=3, every=3, scale=2.0)     # steps 0,2,4,6 and 0,3,6
    page = animate.export_animation([("a", a), ("b", b)], "sv/m", tmp_path / "two.html", title="a vs b").read_text()
    _check_player(page, 5)                                       # the union of steps: 0, 2, 3, 4, 6
    assert "<title>a vs b</title>" in page
    with pytest.raises(ValueError, match="must end in .html"):
        animate.export_animation(a, "m", tmp_path / "x.gif")


def test_comparison_animation_shows_each_run_at_its_newest_step_and_says_so():
    a, b = _spectra(n_steps=4, every=2), _spectra(n_steps=3, every=3, scale=2.0)
    anim = animate.comparison_animation([("a", a), ("b", b)], "m")
    fig = anim._fig
    ax_a, ax_b = fig.axes
    assert ax_a.get_ylim() == ax_b.get_ylim()                     # one y-range for every run
    anim._func(4)
    assert ax_a.get_title() == "a — step 4"
    assert ax_b.get_title() == "b — step 3 (newest ≤ 4)"
    assert fig._suptitle.get_text().endswith("— step 4")
    line_b = ax_b.get_lines()[1]
    expected = np.log10((torch.linspace(1.0, 0.1, 5) * 2.0 * 1.2).double().numpy())
    assert np.allclose(line_b.get_ydata(), expected)
    assert animate.to_html(anim).count("data:image/png;base64") == 5


def test_export_png(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1))
    fig.subplots().plot([0, 1], [0, 1])
    path = animate.export_png(fig, tmp_path / "sub" / "f.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="must end in .png"):
        animate.export_png(fig, tmp_path / "f.jpg")


def test_report_page_is_offline(make_run):
    from orthoscope.viz.report import build_report

    run = make_run(every=2).train(4, progress=False)
    page = build_report(run, title="t", max_frames=3)
    assert not EXTERNAL.search(page) and "https://" not in page and "font-awesome" not in page
    assert page.count('class="anim-icon"') == len(BUTTONS) and "new Animation(frames" in page
