"""report.html: the analysis report as one self-contained page to open in a browser.

The Markdown report (`report.md`) rendered by Python-Markdown (its `tables`
extension for the pipe tables), every figure it links embedded as a base64 data URI,
and a small stylesheet inline: one file that reads offline, mailed or attached as is.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import markdown

HTML_REPORT = "report.html"
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".svg": "image/svg+xml"}  # fmt: skip
STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 72rem; margin: 2rem auto;
       padding: 0 1rem; color: #1b1b1b; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 13px; }
th, td { border: 1px solid #c8c8c8; padding: 0.25rem 0.5rem; text-align: right; }
th { background: #eef1f5; }
td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #f8f9fb; }
img { max-width: 100%; height: auto; display: block; margin: 1rem 0; }
code { background: #f2f2f2; padding: 0 0.2rem; }
.table-scroll { overflow-x: auto; }
"""
# an <img> whose source is a file beside the report (not a URI)
LOCAL_IMAGE = re.compile(r'(<img\b[^>]*?\bsrc=")(?![a-z][a-z0-9+.-]*:)([^"]+)(")')


def _data_uri(path: Path) -> str | None:
    kind = IMAGE_TYPES.get(path.suffix.lower())
    if kind is None or not path.is_file():
        return None
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"


def render(report_md: str, folder: Path, title: str = "Sweep analysis") -> str:
    """The page: `report_md` as HTML, the images it names in `folder` embedded (an
    image that is missing keeps its link, and the page says so in its alt text)."""
    body = markdown.markdown(report_md, extensions=["tables", "fenced_code"],
                             output_format="html")  # fmt: skip

    def embed(match: re.Match) -> str:
        uri = _data_uri(folder / html.unescape(match.group(2)))
        return match.group(1) + (uri or match.group(2)) + match.group(3)

    body = LOCAL_IMAGE.sub(embed, body)
    body = body.replace("<table>", '<div class="table-scroll"><table>').replace(
        "</table>", "</table></div>")  # fmt: skip
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def write_html(folder: Path, report_md: str) -> Path:
    """Writes `folder/report.html` beside the Markdown report and its figures."""
    first = next((line[2:].strip() for line in report_md.splitlines()
                  if line.startswith("# ")), "Sweep analysis")  # fmt: skip
    path = folder / HTML_REPORT
    path.write_text(render(report_md, folder, first), encoding="utf-8")
    return path
