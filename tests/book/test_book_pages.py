"""Every page of the built book (`make book PROFILE=smoke`, run by `make test` first), read in Chromium at 1280 px over
a local http server, as a reader sees it: no console error, no figure covered by another element (or pushed off the
screen), figures with alt text that is not a file name, no stderr block, no cell cut by pandas ("...") and no raw
pandas repr, no broken internal link (file or anchor), no request leaving 127.0.0.1, no failed request."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from test_book import BROWSER_SERVICES, _host

pytestmark = pytest.mark.book
ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
WIDTH, HEIGHT = 1280, 900
SKIP = ("neurons/", "_static/", "_sources/", "_downloads/", "_images/")  # the explorer has its own test
HARNESS = "/__pages_harness.html"

# Runs in the harness page (same origin as the book): loads each page in a 1280 px iframe, one after the other, and
# reports what a reader would see. Figures are scrolled to the middle of the screen and probed at nine points.
CHECK_JS = r"""
const frame = document.getElementById("f");
const describe = el => el ? (el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
  (el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\s+/).join(".") : "")) : "nothing";
function settle(ms) { return new Promise(r => setTimeout(r, ms)); }
async function check(url) {
  await new Promise(res => { frame.onload = res; frame.src = url; });
  await settle(400);
  const d = frame.contentDocument, w = frame.contentWindow;
  const r = {url: url, figures: 0, overlapped: [], alt: [], stderr: [], truncated: [], reprs: [], links: []};
  const visible = e => e.getClientRects().length > 0 && e.offsetHeight > 0;
  d.querySelectorAll(".output.stderr, .stderr").forEach(e => {
    if (visible(e)) r.stderr.push(e.textContent.trim().slice(0, 80)); });
  d.querySelectorAll("td, th").forEach(e => { const t = e.textContent.trim();
    if (t.length === 50 && t.endsWith("...")) r.truncated.push(t); });
  d.querySelectorAll(".cell_output pre, .output pre").forEach(e => {
    const t = e.textContent;
    if (/^Name: .*dtype: \w+$/m.test(t) || /^dtype: \w+$/m.test(t)) r.reprs.push(t.slice(0, 120));
    t.split("\n").forEach(l => { if (l.length >= 40 && /\S\.\.\.$/.test(l)) r.truncated.push(l.slice(-60)); });
  });
  for (const img of d.querySelectorAll(".bd-article img")) {
    const alt = img.getAttribute("alt") || "";
    if (img.closest("figure") && (!alt.trim() || /\.(png|svg|jpe?g|gif)$/i.test(alt.trim()))) r.alt.push(img.getAttribute("src"));
    img.scrollIntoView({block: "center", inline: "nearest"});
    await settle(50);
    const b = img.getBoundingClientRect();
    if (b.width < 4 || b.height < 4) continue;
    r.figures += 1;
    for (const fx of [0.03, 0.5, 0.97]) for (const fy of [0.05, 0.5, 0.95]) {
      const x = b.left + fx * b.width, y = b.top + fy * b.height;
      if (y < 0 || y >= w.innerHeight) continue;  // a figure taller than the screen: its visible part is probed
      if (x < 0 || x >= w.innerWidth) { r.overlapped.push([img.getAttribute("src"), "off the screen", fx, fy]); continue; }
      const hit = d.elementFromPoint(x, y);
      if (hit !== img && !img.contains(hit)) r.overlapped.push([img.getAttribute("src"), describe(hit), fx, fy]);
    }
  }
  d.querySelectorAll("a[href]").forEach(a => r.links.push(a.href));
  return r;
}
(async () => {
  const out = [];
  for (const p of PAGES) { try { out.push(await check(p)); } catch (e) { out.push({url: p, error: String(e)}); } }
  const pre = document.createElement("pre"); pre.id = "result"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
"""


class _Site:
    """A local http server of `root` with one extra in-memory page (the harness), recording every request."""

    def __init__(self, root: Path, extra: dict[str, bytes]):
        import functools
        import threading
        from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

        self.log = log = []

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self):
                body = extra.get(self.path.split("?")[0])
                if body is None:
                    return super().do_GET()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

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


def book_pages(root: Path) -> list[str]:
    """Every page of the book (site-relative paths), the explorer's excepted."""
    pages = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.html"))
    return [p for p in pages if not p.startswith(SKIP)]


def console_errors(stderr: str) -> list[str]:
    """Chromium's console lines (--enable-logging=stderr) that report an error: an uncaught exception, a failed
    load, console.error."""
    out = []
    for line in stderr.splitlines():
        if ":CONSOLE" not in line:
            continue
        prefix, _, message = line.partition("] ")  # the prefix holds the source line: CONSOLE(404) is no status
        if ":ERROR:CONSOLE" in prefix or re.search(r"Uncaught|Failed to load|\bError\b|status of 404|is not defined",
                                                   message):
            out.append(message[:300])
    return out


def test_console_errors_read_the_message_not_the_source_line():
    log = ("[1207/005700.1:INFO:CONSOLE(404)] \"[PST]: Scrolled sidebar using stored browser position...\", source: x.js (404)\n"
           "[1207/005700.2:INFO:CONSOLE(12)] \"Uncaught SyntaxError: Identifier 'THEBE_JS_URL' has already been declared\"\n"
           "[1207/005700.3:ERROR:CONSOLE(1)] \"something\"\n"
           "[1207/005700.4:INFO:CONSOLE(0)] \"Failed to load resource: the server responded with a status of 404\"")
    got = console_errors(log)
    assert len(got) == 3 and not any("Scrolled sidebar" in g for g in got)


def inspect(root: Path, tmp_path: Path) -> dict:
    """Load every page of the site at `root` in Chromium through the harness; returns the pages' reports, the
    console errors, the site's request log and the requests that left 127.0.0.1."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is missing: `make browser` installs it (apt-get install chromium)"
    pages = book_pages(root)
    harness = (f'<!DOCTYPE html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"></head>'
               f'<body style="margin:0"><iframe id="f" style="width:{WIDTH}px;height:{HEIGHT}px;border:0"></iframe>'
               f"<script>const PAGES = {json.dumps(['/' + p for p in pages])};\n{CHECK_JS}</script></body></html>")
    site, outside = _Site(root, {HARNESS: harness.encode()}), _Site(tmp_path, {})  # the second one: the proxy
    try:
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--no-pings",
               "--disable-domain-reliability", "--disable-features=AutofillServerCommunication,OptimizationHints",
               f"--user-data-dir={tmp_path / 'profile'}", f"--proxy-server={outside.url}", "--enable-logging=stderr",
               "--v=0", f"--window-size={WIDTH + 20},{HEIGHT + 40}", "--hide-scrollbars",
               f"--virtual-time-budget={60000 + 8000 * len(pages)}", "--dump-dom", site.url + HARNESS]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    finally:
        site.close()
        outside.close()
    m = re.search(r'<pre id="result">(.*?)</pre>', run.stdout, re.S)
    assert m, f"the harness did not finish: {run.stderr[-2000:]}"
    import html

    reports = json.loads(html.unescape(m.group(1)))
    return {"pages": pages, "reports": reports, "console": console_errors(run.stderr), "log": site.log,
            "left": [r for r in outside.log if _host(r) not in BROWSER_SERVICES], "origin": site.url}


def broken_links(root: Path, reports: list[dict], origin: str) -> list[str]:
    """Links to this site whose file is missing, or whose #anchor the target page lacks."""
    ids: dict[Path, set[str]] = {}
    bad = []
    for r in reports:
        for link in r.get("links", []):
            if not link.startswith(origin + "/"):
                continue
            parts = urlsplit(link)
            path = root / unquote(parts.path).lstrip("/")
            if parts.path.endswith("/"):
                path = path / "index.html"
            if not path.is_file():
                bad.append(f"{r['url']} -> {link}")
                continue
            if parts.fragment and path.suffix == ".html":
                if path not in ids:
                    ids[path] = set(re.findall(r'\bid="([^"]+)"', path.read_text(encoding="utf-8", errors="replace")))
                if unquote(parts.fragment) not in ids[path]:
                    bad.append(f"{r['url']} -> {link} (no such anchor)")
    return sorted(set(bad))


def problems(root: Path, tmp_path: Path) -> tuple[int, dict[str, list]]:
    """(pages checked, {assertion: what failed it}) for the site at `root`."""
    got = inspect(root, tmp_path)
    reports = got["reports"]
    found = {
        "a page failed to load in the harness": [r for r in reports if "error" in r],
        "console errors": got["console"],
        "figures covered or off the screen": [(r["url"], o) for r in reports for o in r.get("overlapped", [])],
        "figures whose alt text is a file name or empty": [(r["url"], a) for r in reports for a in r.get("alt", [])],
        "visible stderr blocks": [(r["url"], s) for r in reports for s in r.get("stderr", [])],
        "cells cut short (pandas' ...)": [(r["url"], t) for r in reports for t in r.get("truncated", [])],
        "raw pandas reprs": [(r["url"], t) for r in reports for t in r.get("reprs", [])],
        "broken internal links": broken_links(root, reports, got["origin"]),
        "requests that left 127.0.0.1": got["left"],
        "failed requests": [(p, c) for _, p, c in got["log"] if c >= 400],
    }
    assert len(reports) == len(got["pages"]), "the harness skipped pages"
    assert sum(r.get("figures", 0) for r in reports) > 0, "no figure was found on any page"
    return len(got["pages"]), found


@pytest.fixture(scope="module")
def built():
    if not (HTML / "index.html").is_file():
        pytest.fail("no built book: run `make book PROFILE=smoke` (make test does it first)")
    return HTML


def test_every_book_page_reads_cleanly_in_chromium_at_1280px(built, tmp_path):
    n, found = problems(built, tmp_path)
    assert n >= 20, f"only {n} pages"
    failed = {k: v[:8] for k, v in found.items() if v}
    assert not failed, f"{n} pages checked; problems: {json.dumps(failed, indent=1, default=str)}"


def test_the_landing_page_is_the_book_not_a_redirect(built):
    text = (built / "index.html").read_text()
    assert 'http-equiv="refresh"' not in text
    for words in ("What this book found", "The zoo", "Three ways to rerun", "neuron explorer"):
        assert words in text, words
    assert "explorer.html" in text and "claims.html" in text and "exercises/" in text
    from universal_neurons.book.chapters.notebook_reading import glued

    g = glued(ROOT / "book" / "generated" / "claims.ipynb")  # the counts, read from the executed notebook
    words = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", text))
    want = (f"Of the paper's {g['clm_n_claims']} claims checked here, {g['clm_n_hold']} hold, "
            f"{g['clm_n_direction']} hold in direction only, {g['clm_n_fail']} do not hold and "
            f"{g['clm_n_untestable']} are not testable")
    assert want in words.replace("\u2019", "'"), want
    share = float(glued(ROOT / "book" / "generated" / "robustness.ipynb")["rob_share"])
    assert f"With the paper's rule, {share:.2f}% of the reference" in words.replace("\u2019", "'")


def test_the_explorer_is_in_the_books_navigation_and_search(built):
    page = built / "book" / "generated" / "explorer.html"
    assert page.is_file() and "explorer.html" in (built / "index.html").read_text()
    hrefs = re.findall(r'href="([^"]*neurons/[^"]+\.html)"', page.read_text())
    assert hrefs and all((page.parent / h).resolve().is_file() for h in hrefs)
    index = (page.parent / next(h for h in hrefs if h.endswith("index.html"))).resolve()
    assert "the book" in index.read_text()
    assert "explorer" in (built / "searchindex.js").read_text()


def test_exercise_pages_offer_the_student_notebook_and_show_solution(built):
    for page in sorted((built / "book" / "generated" / "exercises").glob("*.html")):
        text = page.read_text()
        m = re.search(r'href="([^"]*_downloads/[^"]+/' + page.stem + r'\.ipynb)"', text)
        assert m, f"{page.name}: no student notebook download"
        student = json.loads((page.parent / m.group(1)).resolve().read_text())
        sources = "".join("".join(c["source"]) for c in student["cells"])
        assert "raise NotImplementedError" in sources, page.name
        assert "Show solution" in text and "Show code cell source" not in text, page.name
        assert not re.search(r'<pre><span></span>True\s*</pre>|>True</pre>', text), f"{page.name}: a bare True"
