"""The built book (`make book PROFILE=smoke`, run by `make test` first), read in a real headless browser."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
CHAPTERS = ["zoo", "universality", "scale", "properties", "prediction", "mysteries"]
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
