"""The built book (`make book PROFILE=smoke`, run by `make test` first), read in a real headless browser."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.book
ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
CHAPTERS = ["zoo", "universality", "scale", "properties", "families", "prediction", "entropy", "attention",
            "mysteries"]
NO_DATA = {"scale": "No point of the sweep has been run yet"}  # an honest page without figures (no make sweep)


def render(page: Path, tmp_path) -> str:
    """The DOM of `page` after Chromium has run its scripts (MathJax included)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is missing: `make test` installs it (apt-get install chromium)"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path}",
           "--virtual-time-budget=5000", "--dump-dom", page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout


@pytest.fixture(scope="module")
def built():
    if not (HTML / "index.html").is_file():
        pytest.fail("no built book: run `make book PROFILE=smoke` (make test does it first)")
    return HTML


def test_every_chapter_is_built_with_its_figures(built):
    for name in CHAPTERS:
        page = built / "book" / "generated" / f"{name}.html"
        assert page.is_file(), page
        html = page.read_text()
        imgs = re.findall(r'<img[^>]+src="([^"]+)"', html)
        assert imgs or NO_DATA.get(name, "\0") in html, f"{name}: no figure"
        for src in imgs:
            if not src.startswith("data:"):
                assert (page.parent / src).resolve().is_file(), src
        assert "Traceback" not in html and "output traceback" not in html, f"{name}: a cell failed"


def test_zoo_prose_numbers_come_from_the_notebook(built):
    text = re.sub(r"<[^>]+>", " ", (built / "book" / "generated" / "zoo.html").read_text())
    m = re.search(r"held-out\s+loss averages\s+([\d.]+)\s+nats per token.*?unigram entropy of\s+([\d.]+)", text, re.S)
    assert m, "glued numbers missing from the zoo chapter"
    import json

    profile = (ROOT / "book" / "generated" / "PROFILE").read_text().strip()
    from universal_neurons import load_profile

    prof = load_profile(profile)
    losses = [json.loads((prof.seed_dir(s) / "training_log.json").read_text())["heldout_loss"] for s in prof.seeds]
    assert float(m.group(1)) == pytest.approx(sum(losses) / len(losses), abs=6e-4)
    assert float(m.group(2)) > float(m.group(1))


def test_no_page_loads_anything_from_the_network(built):
    for page in built.rglob("*.html"):
        for url in re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(https?:[^"]+)"', page.read_text()):
            pytest.fail(f"{page.relative_to(built)} loads {url}")


def test_pages_render_in_chromium_with_mathjax(built, tmp_path):
    dom = render(built / "index.html", tmp_path / "a")
    assert "Universal neurons in GPT-2" in dom
    assert "mjx-container" in dom, "MathJax (vendored) did not typeset the formula"
    dom = render(built / "book" / "generated" / "zoo.html", tmp_path / "b")
    assert "Training curves" in dom and "<img" in dom


SCREEN_CHARS = 1500  # about one screen of prose at the book's width: the first number or figure comes before


def _visible_code(el) -> bool:
    """A code cell's input that the reader sees unfolded (not inside a hide-input toggle)."""
    return "cell_input" in el.get("class", []) and el.find_parent("details") is None


def _result(el) -> bool:
    """A glued number or sentence, or a figure."""
    classes = el.get("class", [])
    return el.name == "img" or "pasted-text" in classes or "pasted-inline" in classes


def test_each_page_opens_with_numbers_or_figures_not_code(built):
    """A first-time reader sees the chapter's first number or figure within a screen of the title, and no code
    cell before it (boilerplate is removed from the page, the teaching calls are folded)."""
    from bs4 import BeautifulSoup

    for name in CHAPTERS:
        soup = BeautifulSoup((built / "book" / "generated" / f"{name}.html").read_text(), "html.parser")
        article = soup.find("article") or soup
        title = article.find("h1")
        assert title is not None, f"{name}: no title"
        seen = 0
        for el in title.find_all_next(True):
            assert not _visible_code(el), f"{name}: a code cell comes before the first number or figure"
            if _result(el):
                break
            if el.string and el.find_parent(["p", "li"]) is not None:
                seen += len(el.string)
        else:
            pytest.fail(f"{name}: no glued number and no figure")
        assert seen < SCREEN_CHARS, f"{name}: {seen} characters of prose before the first number or figure"


def test_figures_are_numbered_and_captioned(built):
    from bs4 import BeautifulSoup

    for name in CHAPTERS:
        soup = BeautifulSoup((built / "book" / "generated" / f"{name}.html").read_text(), "html.parser")
        for fig in soup.find_all("figure"):
            caption = fig.find("figcaption")
            assert caption is not None and caption.get_text(strip=True), f"{name}: a figure without a caption"
            assert fig.find(class_="caption-number"), f"{name}: an unnumbered figure"


def test_math_never_escapes_underscores_in_text_mode():
    """MathJax shows the backslash of \\_ inside \\text{...}: names with underscores go in \\mathrm{...}."""
    for nb in (ROOT / "notebooks").glob("*.py"):
        assert not re.search(r"\\text\{[^}]*\\_", nb.read_text()), f"{nb.name}: \\text{{..\\_..}} in math"


def test_tables_sort_by_a_clicked_column_in_chromium(built, tmp_path):
    """The book's tables (pandas DataFrames) sort when a header is clicked: numbers numerically, both ways."""
    js = built / "_static" / "sortable.js"
    assert js.is_file() and "sortable.js" in (built / "book" / "generated" / "families.html").read_text()
    page = tmp_path / "t.html"
    page.write_text(f"""<html><body><table class="dataframe"><thead><tr><th>name</th><th>vr</th></tr></thead>
<tbody><tr><td>b</td><td>0.5</td></tr><tr><td>a</td><td>10</td></tr><tr><td>c</td><td>2</td></tr></tbody></table>
<script src="{js.as_uri()}"></script>
<script>window.addEventListener("load", () => {{
  const th = document.querySelectorAll("th")[1]; th.click(); th.click();
  document.body.dataset.order = Array.from(document.querySelectorAll("tbody tr")).map(r => r.cells[0].textContent).join("");
}});</script></body></html>""")
    dom = render(page, tmp_path / "profile")
    assert 'data-order="acb"' in dom, "clicking the vr header twice sorts 10, 2, 0.5"
