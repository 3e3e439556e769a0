"""report.html (experiments/report_html.py): one self-contained page, checked in a
headless browser (Debian's Chromium, driven by Playwright), or skipped with its reason
where no browser is installed."""

from __future__ import annotations

import base64
import html
import io
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from experiments import analysis
from experiments.report_html import render
from tests.test_analysis import write_sweep

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# as the machine's notes have it: no GPU, no sandbox as root, and none of the
# background connections a closed network refuses
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip


def _figure(path) -> np.ndarray:
    """A figure no page draws by chance: red left, blue right, a green band."""
    pixels = np.zeros((120, 200, 3), np.uint8)
    pixels[:, :100] = (220, 30, 30)
    pixels[:, 100:] = (30, 30, 220)
    pixels[50:70] = (30, 200, 30)
    Image.fromarray(pixels).save(path)
    return pixels


REPORT = """# Sweep analysis

Some text with `code`.

| criterion | FID gaussian | FID gmm |
|---|---|---|
| random | 81.20 [79.1, 83.3] n=5 | 75.00 |
| lowest_recon | 88.10 [85.0, 91.2] n=5 | 79.90 |

![the figure](figure one.png)

| a | b |
|---|---|
| 1 | 2 |
"""


def test_render_embeds_every_figure_and_keeps_every_table(tmp_path):
    pixels = _figure(tmp_path / "figure one.png")
    page = render(REPORT, tmp_path)
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(sources) == 1 and sources[0].startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(sources[0].split(",", 1)[1])))
    assert np.array_equal(np.asarray(decoded.convert("RGB")), pixels)
    assert page.count("<table>") == 2 and page.count("<th>") == 5
    assert "<td>81.20 [79.1, 83.3] n=5</td>" in page
    assert "file:" not in page and "http" not in page  # nothing to fetch


def test_a_missing_figure_keeps_its_link(tmp_path):
    page = render(REPORT, tmp_path)
    assert 'src="figure one.png"' in html.unescape(page).replace("%20", " ")


def test_the_analysis_writes_the_html_beside_the_markdown(tmp_path):
    folder = write_sweep(tmp_path / "syn")
    out = tmp_path / "report"
    analysis.main([str(folder), "--out", str(out)])
    markdown_report = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown_report)
    assert linked and len(re.findall(r'src="data:image/png;base64,', page)) == len(
        linked)  # fmt: skip
    tables = len(re.findall(r"^\|[-| :]+\|$", markdown_report, re.M))
    assert tables and page.count("<table>") == tables


NO_BROWSER = ("no Chromium on this machine (Debian: apt-get install chromium); "
              ".ci/run installs it")


@pytest.mark.skipif(CHROMIUM is None, reason=NO_BROWSER)
def test_report_html_in_a_headless_browser(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    pixels = _figure(tmp_path / "figure one.png")
    page_file = tmp_path / "report.html"
    page_file.write_text(render(REPORT, tmp_path))
    (tmp_path / "figure one.png").unlink()  # the page must not need it any more
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.route("**/*", lambda route: route.abort()
                       if not route.request.url.startswith(("file:", "data:"))
                       else route.continue_())  # fmt: skip
            page.goto(page_file.as_uri())
            page.wait_for_load_state("load")
            assert page.locator("table").count() == 2
            assert page.locator("td", has_text="lowest_recon").count() == 1
            image = page.locator("img")
            assert image.evaluate("i => i.complete && i.naturalWidth") == 200
            shot = np.asarray(Image.open(io.BytesIO(
                page.screenshot(full_page=True))).convert("RGB")).astype(float)
            table_box = page.locator("table").first.bounding_box()
            image_box = image.bounding_box()
        finally:
            browser.close()
    # the figure, where the browser drew it: the same picture at its drawn size
    x, y, w, h = (round(image_box[k]) for k in ("x", "y", "width", "height"))
    drawn = shot[y:y + h, x:x + w]
    expected = np.asarray(Image.fromarray(pixels).resize((w, h))).astype(float)
    assert np.abs(drawn - expected).mean() < 8
    # the table: its header's shade and dark text on it, not an empty box
    x, y, w, h = (round(table_box[k]) for k in ("x", "y", "width", "height"))
    table = shot[y:y + h, x:x + w]
    header = np.array([0xEE, 0xF1, 0xF5], float)
    assert (np.abs(table - header).sum(axis=2) < 6).mean() > 0.05
    assert (table.sum(axis=2) < 200).mean() > 0.01  # the numbers' ink
