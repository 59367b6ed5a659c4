"""Citations in the built book (`make book PROFILE=smoke`, run by `make test` first), and the citation metadata.

The book cites with sphinxcontrib-bibtex: `references.bib` holds the entries, `{cite:p}` / `{cite:t}` roles in the
prose cite them, and `book/bibliography.md` (the References page) lists every cited entry, each at the anchor
`cite-<key>` (`bibtex_cite_id` in `_config.yml`)."""

import html
import re
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.book
ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
BIB = ROOT / "references.bib"
CHAPTERS = ["zoo", "universality", "scale", "properties", "families", "prediction", "entropy", "attention",
            "mysteries"]
PAPER_TITLE = "Universal Neurons in GPT2 Language Models"
LINK = re.compile(r'<a class="reference internal" href="(?:\.\./)?(?:book/)?bibliography\.html#([^"]+)"[^>]*>')


def bib_keys() -> list[str]:
    """The keys of references.bib: every `@type{key,` that is an entry (not @comment, @string or @preamble)."""
    found = re.findall(r"^@(\w+)\s*\{\s*([^,\s]+)\s*,", BIB.read_text(encoding="utf-8"), re.M)
    return [key for kind, key in found if kind.lower() not in {"comment", "string", "preamble"}]


def anchor(key: str) -> str:
    """The id of a key's entry on the References page (bibtex_cite_id "cite-{key}", through docutils' make_id)."""
    from docutils.nodes import make_id

    return make_id(f"cite-{key}")


@pytest.fixture(scope="module")
def built():
    if not (HTML / "index.html").is_file():
        pytest.fail("no built book: run `make book PROFILE=smoke` (make test does it first)")
    return HTML


@pytest.fixture(scope="module")
def bibliography(built) -> str:
    page = built / "book" / "bibliography.html"
    assert page.is_file(), "no References page: book/bibliography.md must be in _toc.yml"
    return page.read_text()


def test_references_bib_has_unique_keys():
    keys = bib_keys()
    assert len(keys) >= 10, keys
    assert len(keys) == len(set(keys)), f"duplicate keys in references.bib: {keys}"


def test_bibliography_page_lists_every_reference(bibliography):
    """Every entry of references.bib is on the References page, at its anchor. The bibliography lists cited
    entries only, so this also says that each entry is cited somewhere in the book."""
    ids = set(re.findall(r'<div class="citation" id="([^"]+)"', bibliography))
    missing = [key for key in bib_keys() if anchor(key) not in ids]
    assert not missing, (f"not on the References page (never cited, or bibtex_cite_id is not \"cite-{{key}}\" in "
                         f"_config.yml): {missing}")
    assert len(ids) == len(bib_keys()), f"entries on the page that references.bib lacks: {sorted(ids)}"
    assert PAPER_TITLE.lower() in bibliography.lower()


def test_chapters_link_citations_to_their_entries(built, bibliography):
    """Citations in the chapters are links to the References page, each to the anchor of an entry that is there
    and that the link's tooltip describes; the paper is cited in the introduction and in most chapters."""
    ids = set(re.findall(r'<div class="citation" id="([^"]+)"', bibliography))
    entries = {a: html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", body))) for a, body in
               re.findall(r'<div class="citation" id="([^"]+)"[^>]*>(.*?)</div>', bibliography, re.S)}
    cited = {}
    for name in CHAPTERS:
        page = (built / "book" / "generated" / f"{name}.html").read_text()
        for m in LINK.finditer(page):
            target = m.group(1)
            assert target in ids, f"{name}: a citation links to #{target}, which the References page lacks"
            title = re.search(r'title="([^"]*)"', m.group(0))
            if title:  # bibtex_tooltips: the formatted entry
                assert html.unescape(title.group(1))[:40] in entries[target], (name, target)
            cited.setdefault(target, set()).add(name)
    assert cited, "no chapter has a citation linking to the References page"
    paper = anchor("gurnee2024universal")
    assert len(cited.get(paper, ())) >= len(CHAPTERS) // 2, f"the paper is cited in only {cited.get(paper)}"
    assert "entropy" in cited.get(anchor("stolfo2024confidence"), ()), "the entropy chapter does not cite Stolfo et al."
    intro = (built / "index.html").read_text()
    assert paper in {m.group(1) for m in LINK.finditer(intro)}, "the front page does not cite the paper"


def test_citation_cff_prefers_the_paper():
    import yaml

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert str(cff["cff-version"]) == "1.2.0"
    for key in ("message", "title", "authors", "type", "license"):
        assert cff.get(key), f"CITATION.cff lacks {key}"
    pref = cff["preferred-citation"]
    assert pref["type"] == "article"
    assert pref["title"] == PAPER_TITLE
    assert pref["journal"] == "Transactions on Machine Learning Research" and int(pref["year"]) == 2024
    assert [a["family-names"] for a in pref["authors"]][:1] == ["Gurnee"] and len(pref["authors"]) == 8
    assert "2401.12181" in pref["url"]
    assert any("2401.12181" in str(i["value"]) for i in pref["identifiers"])


def test_licence_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    licence = project.get("license")
    assert licence in ("MIT", {"text": "MIT"}), f"pyproject's [project] license: {licence!r}"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Permission is hereby granted" in text
    paper_data = "src/universal_neurons/paper_data/universal-neurons-paper/"
    assert paper_data in text, "LICENSE does not say that the paper's tables keep their own licence"
    assert (ROOT / paper_data / "LICENSE").read_text().startswith("MIT License")
