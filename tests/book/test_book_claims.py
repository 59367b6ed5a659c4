"""The claims page and the execution page of the built book (`make book`; `make test` builds the smoke book first):
the claims page opens the book, has one row per claim whose values are the chapters' glued values (the executed
notebooks in book/generated/), and its links lead to sections that exist; the execution page lists every chapter
with its wall time. `UN_BOOK_ROOT` reads another checkout's build (a scratch copy) instead of this one."""

import json
import os
import re
from pathlib import Path

import pytest

from universal_neurons.measures.verdicts import HOLDS, VERDICTS
from universal_neurons.book.chapters import claims
from universal_neurons.book.chapters import claims_control
from universal_neurons.book.chapters.notebook_reading import glued, plain, shown
from universal_neurons.config.profile import load_profile

pytestmark = pytest.mark.book
ROOT = Path(os.environ.get("UN_BOOK_ROOT") or Path(__file__).resolve().parents[2])
HTML = ROOT / "_build" / "html"
GENERATED = ROOT / "book" / "generated"


def _soup(page: Path):
    from bs4 import BeautifulSoup

    return BeautifulSoup(page.read_text(), "html.parser")


def _cells(table) -> list[list[str]]:
    return [[" ".join(td.get_text(" ", strip=True).split()) for td in tr.find_all(["td", "th"])]
            for tr in table.find("tbody").find_all("tr")]


def _header(table) -> list[str]:
    return [th.get_text(strip=True) for th in table.find("thead").find_all("tr")[0].find_all("th")]


def _norm(text: str) -> str:
    return " ".join(str(text).split())


@pytest.fixture(scope="module")
def claims_page():
    page = HTML / "book" / "generated" / "claims.html"
    if not page.is_file():
        pytest.fail(f"no claims page in {HTML}: run `make book PROFILE=smoke` (make test does it first)")
    return page


def _index() -> Path:
    """The book's first page: index.html, or the page it redirects to."""
    index = HTML / "index.html"
    m = re.search(r'http-equiv="Refresh" content="0; url=([^"]+)"', index.read_text())
    return (index.parent / m.group(1)).resolve() if m else index


def test_the_claims_page_comes_first_in_the_table_of_contents(claims_page):
    index = _index()
    text = index.read_text()
    rel = lambda p: os.path.relpath(p, index.parent)  # noqa: E731
    first_claims = text.find(f'href="{rel(claims_page)}"')
    first_chapter = text.find(f'href="{rel(HTML / "book" / "generated" / "zoo.html")}"')
    assert first_claims >= 0, f"{index.name} does not link the claims page"
    assert first_chapter >= 0 and first_claims < first_chapter, "the claims page comes after the first chapter"


def _control():
    return claims_control.load(load_profile("smoke"))


def test_one_row_per_claim_with_the_chapters_glued_values(claims_page):
    soup = _soup(claims_page)
    table = soup.find("table", class_="claims")
    assert table is not None, "no claims table"
    head, rows = _header(table), _cells(table)
    assert head == claims.SHOWN
    assert len(rows) == len(claims.CLAIMS), "one row per claim"
    # the same table, read again from the executed chapters that the book shows (book/generated/)
    expected, _ = claims.claim_rows(GENERATED, control=_control())
    for row, want in zip(rows, expected.to_dict("records")):
        got = dict(zip(head, row))
        for col in ("claim", "the paper", "this run", "rule", "verdict", "control"):
            assert got[col] == _norm(want[col]), (want["#"], col)
    # each verdict and rule is the chapter's glued one, a verdict of the protocol
    for claim, row in zip(claims.CLAIMS, rows):
        got = dict(zip(head, row))
        nb = GENERATED / f"{claim.chapter}.ipynb"
        assert nb.is_file(), f"the smoke book lacks {nb.name}"
        assert got["verdict"] == shown(glued(nb)[claim.verdict_key]) and got["verdict"] in VERDICTS
        assert got["rule"] == _norm(shown(glued(nb)[claim.rule_key])) and got["rule"].startswith("holds if ")


def test_the_values_it_reads_are_the_glued_values(claims_page):
    soup = _soup(claims_page)
    values = next(t for t in soup.find_all("table") if "key" in _header(t))
    head, rows = _header(values), _cells(values)
    assert len(rows) == len(claims.claim_rows(GENERATED)[1]) > 0, "every value it reads is listed"
    for row in rows:
        got = dict(zip(head, row))
        raw = glued(GENERATED / f"{got['chapter']}.ipynb")[got["key"]]
        assert _rounds(got["value"], raw), got


def _rounds(page: str, raw: str) -> bool:
    """The page shows the glued value: the same text, or a number that rounds the stored one at the digits shown."""
    try:
        x = float(shown(raw))
    except ValueError:
        return page in (_norm(shown(raw)), _norm(plain(raw)))
    text = page.replace(",", "")
    try:
        y = float(text)
    except ValueError:
        return False
    if x != x:  # NaN: shown as nan
        return y != y
    if "e" in text.lower() or "." not in text and abs(x) >= 1e4:
        return abs(y - x) <= 5e-4 * abs(x)
    decimals = len(text.split(".")[1]) if "." in text else 0
    return abs(y - x) <= 0.5 * 10 ** -decimals + 1e-12


def test_the_control_column_is_the_untrained_runs_and_nothing_holds_there(claims_page):
    """The negative control: the smoke chapters on untrained models (`make control PROFILE=smoke`, run by make test
    before the book) give no "holds" anywhere, and the page's control column shows their verdicts."""
    control = _control()
    assert control is not None and "computed in this build" in control.source, \
        "no control run: make control PROFILE=smoke (make test runs it first)"
    verdicts = [control.verdict(c.chapter, c.verdict_key) for c in claims.CLAIMS]
    assert all(v in VERDICTS for v in verdicts), verdicts
    assert HOLDS not in verdicts, [(c.claim, v) for c, v in zip(claims.CLAIMS, verdicts) if v == HOLDS]
    table = _soup(claims_page).find("table", class_="claims")
    head, rows = _header(table), _cells(table)
    assert [dict(zip(head, r))["control"] for r in rows] == verdicts


def test_the_shipped_control_of_the_release_zoo_has_no_holds():
    """The negative control of the release zoo's shape (computed once, shipped with its checksum)."""
    control = claims_control.load(load_profile("default"))
    assert control is not None, "no shipped control: make control PROFILE=default SHIP=1"
    verdicts = {c.claim: control.verdict(c.chapter, c.verdict_key) for c in claims.CLAIMS}
    assert all(v in VERDICTS for v in verdicts.values()), verdicts
    assert HOLDS not in verdicts.values(), {k: v for k, v in verdicts.items() if v == HOLDS}


def test_its_links_lead_to_sections_that_exist(claims_page):
    table = _soup(claims_page).find("table", class_="claims")
    links = [a["href"] for a in table.find_all("a")]
    ran = [c for c in claims.CLAIMS if (GENERATED / f"{c.chapter}.ipynb").is_file()]
    assert len(links) == len(ran) > 0
    for href in links:
        page, _, anchor = href.partition("#")
        target = (claims_page.parent / page).resolve()
        assert target.is_file(), href
        assert anchor and f'id="{anchor}"' in target.read_text(), f"{href}: no such section"


def test_the_execution_page_lists_every_chapter_with_its_time():
    page = HTML / "book" / "generated" / "execution.html"
    assert page.is_file(), "no execution page"
    soup = _soup(page)
    table = next(t for t in soup.find_all("table") if "seconds" in _header(t))
    head = _header(table)
    rows = {r[0]: dict(zip(head, r)) for r in _cells(table)}
    chapters = [p for p in GENERATED.glob("*.ipynb") if p.stem != "execution"]
    assert len(chapters) > 1
    for nb in chapters:
        assert nb.stem in rows, f"{nb.stem} is not on the execution page"
        duration = json.loads(nb.read_text())["metadata"]["papermill"]["duration"]
        assert float(rows[nb.stem]["seconds"]) == pytest.approx(round(duration, 1), abs=0.051), nb.stem
    text = soup.get_text(" ")
    for word in ("torch", "transformer-lens", "jupyter-book", "myst-nb", "universal-neurons"):
        assert word in text, word
    assert re.search(r"executed on \d{4}-\d\d-\d\d", " ".join(text.split())), "no date"
