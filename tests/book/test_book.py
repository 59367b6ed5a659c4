"""The built book (`make book PROFILE=smoke`, run by `make test` first), read in a real headless browser."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.book
ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
CHAPTERS = ["zoo", "universality", "scale", "properties", "families", "prediction", "entropy", "attention",
            "mysteries", "robustness"]
EXERCISE_CHAPTERS = ["universality", "properties", "families", "entropy", "attention"]
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
    """No script, stylesheet or image comes from elsewhere; the canonical link (the published address, set by
    html.baseurl) names the page, it loads nothing."""
    for page in built.rglob("*.html"):
        for tag in re.findall(r"<(?:script|link|img)\b[^>]*>", page.read_text()):
            if 'rel="canonical"' in tag:
                continue
            for url in re.findall(r'(?:src|href)="(https?:[^"]+)"', tag):
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


# ---- the neuron explorer, served over http ---------------------------------------------------------------------
class _Server:
    """A local http server of `root` (127.0.0.1, a free port) recording every request and its status."""

    def __init__(self, root: Path):
        import functools
        import threading
        from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

        self.log = []
        log = self.log

        class Handler(SimpleHTTPRequestHandler):
            def log_request(self, code="-", size="-"):
                log.append((self.command, self.path, int(getattr(code, "value", code))))

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# Chromium's own services, which it calls whatever the page (updates, clock, sign-in, autofill): not the page's
BROWSER_SERVICES = {"update.googleapis.com", "clients2.google.com", "accounts.google.com",
                    "content-autofill.googleapis.com"}


def _host(request: tuple) -> str:
    """The host a proxied request asks for (CONNECT host:port, or an absolute http URL)."""
    from urllib.parse import urlsplit

    method, target, _ = request
    return target.rsplit(":", 1)[0] if method == "CONNECT" else urlsplit(target).hostname or ""


def _chromium(tmp_path, proxy: str, *args) -> str:
    """Headless Chromium with every request off 127.0.0.1 sent to `proxy` (a recorder), its stdout."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is missing: `make test` installs it (apt-get install chromium)"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--no-pings", "--disable-domain-reliability",
           "--disable-features=AutofillServerCommunication,OptimizationHints", f"--user-data-dir={tmp_path}",
           f"--proxy-server={proxy}", "--virtual-time-budget=5000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout


def test_neuron_explorer_in_chromium_over_http(built, tmp_path):
    """The explorer of the smoke book: index and a neuron page load over http from 127.0.0.1 with no failed request
    and none elsewhere (a recording proxy takes any), a twin link leads to the twin's page, and a screenshot of the
    page is not blank."""
    from urllib.parse import urljoin

    from universal_neurons import load_profile

    profile = (ROOT / "book" / "generated" / "PROFILE").read_text().strip()
    run = load_profile(profile, (ROOT / "book" / "generated" / "SET").read_text().strip()).run_name
    assert (built / "neurons" / run / "index.html").is_file(), "make book wrote no neuron explorer"
    site, outside = _Server(built), _Server(tmp_path)  # the second one stands as the proxy: it records any request
    try:
        proxy = outside.url
        index_url = f"{site.url}/neurons/{run}/index.html"
        index = _chromium(tmp_path / "a", proxy, "--dump-dom", index_url)
        rows = [r for r in re.findall(r"<tr>.*?</tr>", index, re.S) if re.search(r"<td>(universal|top)</td>", r)]
        pages = [re.search(r'<a href="([^"]+\.html)"', r)[1] for r in rows]
        assert pages, "the index links no compared neuron's page"
        page_url = urljoin(index_url, pages[0])
        page = _chromium(tmp_path / "b", proxy, "--dump-dom", page_url)
        assert "Top activations" in page and 'class="tok ex"' in page
        twins = re.findall(r'<table class="twins">.*?</table>', page, re.S)
        links = re.findall(r'<a href="([^"]+)">(seed-\d+ L\d+\.\d+)</a>', twins[0]) if twins else []
        assert links, "the neuron page has no twin link"
        twin_href, twin_name = links[0]
        twin = _chromium(tmp_path / "c", proxy, "--dump-dom", urljoin(page_url, twin_href))
        assert twin_name in twin and "Top activations" in twin
        shot = tmp_path / "page.png"
        _chromium(tmp_path / "d", proxy, f"--screenshot={shot}", "--window-size=1200,900", page_url)
    finally:
        site.close()
        outside.close()
    failed = [(p, code) for _, p, code in site.log if code >= 400]
    assert not failed, f"failed requests: {failed}"
    assert any(p.endswith("_static/explorer.css") for _, p, _ in site.log), "the stylesheet was not requested"
    left = [r for r in outside.log if _host(r) not in BROWSER_SERVICES]
    assert not left, f"requests left 127.0.0.1: {left}"
    import matplotlib.image as mpimg
    import numpy as np

    img = mpimg.imread(shot)
    assert img.shape[0] >= 800 and img.shape[1] >= 1100
    assert float(np.std(img[..., :3])) > 0.05, "the screenshot is blank"
    assert (img[..., :3] < 0.5).mean() > 0.001, "no dark pixels (text) in the screenshot"


def test_chapter_tables_link_neuron_ids_to_the_explorer(built):
    """Neuron ids in the chapters' tables link to explorer pages that exist."""
    n = 0
    for name in CHAPTERS:
        page = built / "book" / "generated" / f"{name}.html"
        for href, text in re.findall(r'<a href="([^"]*neurons/[^"]+)">(L\d+\.\d+)</a>', page.read_text()):
            target = (page.parent / href).resolve()
            assert target.is_file(), f"{name}: {text} links {href}, which is missing"
            assert f"L{text[1:].replace('.', 'N')}.html" == target.name
            n += 1
    assert n > 0, "no chapter table links a neuron to its explorer page"


# ---- online: buttons, launch links, the build's footer -----------------------------------------------------------
def _published_globs() -> list[str]:
    """What the publishing workflow pushes to the launch buttons' branch (its `git add -f` lines)."""
    text = (ROOT / ".github" / "workflows" / "book.yml").read_text()
    found = re.findall(r"git add -f (\S+)", text)
    assert found, "the workflow pushes no executed chapters"
    return found


def test_every_chapter_has_download_and_launch_buttons_to_published_files(built):
    """Download on every chapter page. Launch (Colab, Binder), repository and issue buttons only when the build named
    its repository (BOOK_REPOSITORY; the publishing workflow does): then each launch URL opens, on that repository and
    branch, a file that the publishing workflow pushes there (and that this build wrote); without one, none."""
    from fnmatch import fnmatch

    import yaml

    cfg = yaml.safe_load((ROOT / "_build" / "book-config.yml").read_text())  # what this build ran with
    url, branch = cfg["repository"].get("url"), cfg["repository"]["branch"]
    published = _published_globs()

    def pushed(path):
        return any(fnmatch(path, g) and "/" not in path[len(g.split("*")[0]):] for g in published)

    for name in CHAPTERS + [f"exercises/{c}" for c in EXERCISE_CHAPTERS]:
        html = (built / "book" / "generated" / f"{name}.html").read_text()
        assert re.search(r'href="[^"]*_sources/book/generated/' + name + r'\.ipynb"', html), f"{name}: no download"
        colab = re.findall(r'href="(https://colab\.research\.google\.com/github/[^"]+)"', html)
        binder = re.findall(r'href="(https://mybinder\.org/v2/gh/[^"]+)"', html)
        if not url:
            assert not colab and not binder and not re.search(r"source-(repository|issues)-button", html), \
                f"{name}: a button to a guessed repository"
            continue
        owner_repo = url.removeprefix("https://github.com/")
        assert colab and binder, f"{name}: launch buttons missing"
        for link in colab:
            path = link.split(f"/github/{owner_repo}/blob/{branch}/", 1)[1]
            assert pushed(path) and (ROOT / path).is_file(), (name, link)
        for link in binder:
            assert link.startswith(f"https://mybinder.org/v2/gh/{owner_repo}/{branch}?"), (name, link)
            path = re.search(r"urlpath=(?:lab/tree|tree)/([^&]+)", link.replace("%2F", "/")).group(1)
            assert pushed(path) and (ROOT / path).is_file(), (name, link)


def test_every_page_says_when_and_from_what_it_was_built(built):
    from universal_neurons.book.online import commit

    sha = commit(ROOT).split("+")[0]
    profile = (ROOT / "book" / "generated" / "PROFILE").read_text().strip()
    for name in CHAPTERS:
        html = (built / "book" / "generated" / f"{name}.html").read_text()
        m = re.search(r'class="build-info">Built on (\d{4}-\d\d-\d\d) [\d:]+ UTC from commit <code>([^<]+)</code> with '
                      r"the profile <code>([^<]+)</code>", html)
        assert m, f"{name}: no build line"
        assert m.group(2).split("+")[0] == sha and m.group(3).startswith(profile)


def test_executed_chapters_start_with_the_setup_cell(built):
    import json

    from universal_neurons.book.online import SETUP_TAG

    for name in CHAPTERS:
        nb = json.loads((ROOT / "book" / "generated" / f"{name}.ipynb").read_text())
        tags = nb["cells"][0]["metadata"].get("tags", [])
        assert SETUP_TAG in tags and "remove-cell" in tags, name
        assert "REPOSITORY" not in (built / "book" / "generated" / f"{name}.html").read_text(), name


def test_the_exercises_part_shows_tasks_with_folded_solutions_that_pass(built):
    """The instructor build in the book: every exercise's task, its solution folded (a toggle), and its check's
    output saying that all checks passed; no failed cell."""
    from bs4 import BeautifulSoup

    from universal_neurons.teaching.catalog import EXERCISES

    assert sorted(EXERCISE_CHAPTERS) == sorted({e.chapter for e in EXERCISES.values()})
    for c in EXERCISE_CHAPTERS:
        page = built / "book" / "generated" / "exercises" / f"{c}.html"
        html = page.read_text()
        soup = BeautifulSoup(html, "html.parser")
        assert soup.find("h1").get_text().startswith("Exercises:"), c
        for ex in (e for e in EXERCISES.values() if e.chapter == c):
            assert ex.title in html and f"All checks of {ex.function} passed" in html, (c, ex.name)
        folded = soup.select(".tag_hide-input")
        assert len(folded) == sum(e.chapter == c for e in EXERCISES.values()), c
        assert "Traceback" not in html and "NotImplementedError(" not in html, c
