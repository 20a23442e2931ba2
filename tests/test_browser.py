"""The built book in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by Selenium, with the network off except the local server.

Checks what a reader sees: every claim's verdict on the landing page, formulas typeset by
MathJax served from the site (no raw ``\\(``), no page wider than a 1400 px window, every internal
link resolving. Screenshots of the landing page and Table 1 go to ``_build/screenshots/``
(ignored by git). Skipped, saying why, without the built book, chromium, its driver or selenium.
"""
from __future__ import annotations

import functools
import http.server
import re
import shutil
import tempfile
import threading
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver"
                                          if Path("/usr/bin/chromedriver").exists() else None)
WIDTH = 1400

if not (HTML / "book" / "intro.html").is_file():
    pytest.skip("the book is not built: run `make book` first (CI does)", allow_module_level=True)
if not (CHROMIUM and DRIVER):
    pytest.skip("chromium and chromium-driver are not installed (Debian: apt-get install chromium "
                "chromium-driver; .ci/browser_setup.sh does it in CI)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                "(pip install -r requirements.txt)")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    # A connection Chromium opens and never uses (a preconnect) must not hold a handler for
    # ever: it reads with this timeout, then closes.
    timeout = 10

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site():
    """The built book served on 127.0.0.1 (the only host the browser may reach).

    Each request is handled on its own daemon thread, so ``shutdown`` waits for the accept loop
    only, never for a connection the browser left open (a single-threaded server blocked on one
    and hung the suite's teardown, once in six runs)."""
    handler = functools.partial(_Quiet, directory=str(HTML))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}/"
        server.shutdown()
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def browser(site):
    """Headless Chromium; it depends on ``site`` so that it quits before the server stops."""
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    profile = tempfile.mkdtemp(prefix="trs-chromium-")
    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                 f"--window-size={WIDTH},900",
                 # network off: every host but the local server is unresolvable and proxied
                 # to a closed port
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                 "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _is_redirect(page: Path) -> bool:
    return 'http-equiv="Refresh"' in page.read_text(encoding="utf-8")[:2000]


def _pages():
    """The book's pages, without Sphinx's index pages and redirects (the site's ``index.html``
    sends the reader on at once: waiting for MathJax there races the navigation)."""
    return sorted(p.relative_to(HTML).as_posix() for p in HTML.glob("**/*.html")
                  if not p.relative_to(HTML).as_posix().startswith(("_static", "_sources"))
                  and p.name not in ("genindex.html", "search.html") and not _is_redirect(p))


def _open(browser, url):
    browser.set_script_timeout(60)
    browser.get(url)
    # MathJax typesets after load; wait until it says it is done (or there is none).
    browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
            MathJax.startup.promise.then(() => done(true), () => done(false));
        } else { setTimeout(() => done(false), 200); }""")


def _norm(text: str) -> str:
    """Text as Sphinx's smart quotes print it, compared plainly."""
    return (text.replace("\u2026", "...").replace("\u2019", "'").replace("\u2018", "'")
            .replace("\u201c", '"').replace("\u201d", '"').replace("\u2013", "-")
            .replace("\u2014", "--"))


def test_landing_page_shows_every_verdict(browser, site):
    from trs_lib.companion import dashboard
    _open(browser, urljoin(site, "book/intro.html"))
    rows = browser.execute_script(
        "return Array.from(document.querySelectorAll('main table tr'))"
        ".map(r => r.innerText)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / "landing.png"))
    for c in dashboard.claims("cpu"):
        start = _norm(dashboard._cell(c["text"]).replace("\\|", "|"))[:40]
        row = next((r for r in rows if start in _norm(r) and (
            c["evaluation"] not in ("paper", "worst_case") or c["under"] in _norm(r))), None)
        assert row is not None, f"claim {c['id']} is not on the landing page"
        assert c["verdict"] in row, f"claim {c['id']}: expected verdict {c['verdict']!r}"
    badges = browser.execute_script(
        "return Array.from(document.querySelectorAll('.verdict')).map(b => "
        "getComputedStyle(b).backgroundColor)")
    assert badges and all(b not in ("rgba(0, 0, 0, 0)", "transparent") for b in badges), \
        "verdict badges are not coloured (book/_static/companion.css not loaded?)"


def test_the_site_root_leads_to_the_landing_page(browser, site):
    from selenium.webdriver.support.ui import WebDriverWait
    browser.get(site)
    WebDriverWait(browser, 30).until(lambda b: b.current_url.endswith("book/intro.html"))
    assert "TRS ensembles" in browser.title and browser.find_elements("css selector", "main table")


def test_formulas_are_typeset_offline(browser, site):
    _open(browser, urljoin(site, "book/intro.html"))
    n = browser.execute_script("return document.querySelectorAll('mjx-container').length")
    assert n > 0, "no MathJax output on the landing page: is MathJax served from _static?"
    text = browser.execute_script("return document.querySelector('main').innerText")
    assert "\\(" not in text and "\\mathcal" not in text, "raw TeX visible on the landing page"
    hosts = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    outside = [h for h in hosts if urlparse(h).hostname not in ("127.0.0.1", None)]
    assert not outside, f"the page requested resources from the network: {outside[:3]}"


def test_table1_screenshot_has_plot_and_tables(browser, site):
    _open(browser, urljoin(site, "notebooks/table1_mnist.html"))
    n_img = browser.execute_script("return document.querySelectorAll('main img').length")
    n_tab = browser.execute_script("return document.querySelectorAll('main table').length")
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / "table1.png"))
    browser.execute_script("document.querySelector('main img').scrollIntoView()")
    browser.save_screenshot(str(SHOTS / "table1_plot.png"))
    assert n_img >= 1 and n_tab >= 3


def test_landing_first_screen_has_findings_forest_plot_and_verdict_table(browser, site):
    """At 1400 px the forest plot and the verdict table start within the first 1,800 px; each
    "What we found" sentence has a number and an interval (or an exact counterexample's numbers);
    every claim of the table links to a page that exists."""
    _open(browser, urljoin(site, "book/intro.html"))
    tops = browser.execute_script("""
        const img = Array.from(document.querySelectorAll('main img')).find(i => i.alt.startsWith('Forest plot'));
        const tab = document.querySelector('main table.dashboard');
        const y = el => el ? el.getBoundingClientRect().top + window.scrollY : null;
        return [y(img), y(tab), img ? img.naturalWidth : 0];""")
    assert tops[0] is not None and tops[0] < 1800 and tops[2] > 0, f"forest plot at {tops[0]} px (or not loaded)"
    assert tops[1] is not None and tops[1] < 1800, f"verdict table at {tops[1]} px"
    found = browser.execute_script(
        "return Array.from(document.querySelectorAll('main .admonition li')).map(li => li.innerText)")
    assert 3 <= len(found) <= 6, found
    for f in found:
        assert re.search(r"\[[+−-]?\d+\.\d+, [+−-]?\d+\.\d+\]", f) or (
            "exact counterexample" in f and re.search(r"\d\.\d+ > ", f)), f
    links = browser.execute_script(
        "return Array.from(document.querySelectorAll('main table.dashboard a[href]')).map(a => a.href)")
    pages = {urlparse(u).path.lstrip("/") for u in links if "notebooks/" in u}
    assert pages and all((HTML / p).is_file() for p in pages), pages


_OVERFLOW = """
const W = document.documentElement.clientWidth;
const out = [];
if (document.documentElement.scrollWidth > W + 1) out.push('page ' + document.documentElement.scrollWidth);
for (const el of document.querySelectorAll('main table, main pre, main img, main .math')) {
  const r = el.getBoundingClientRect();
  let box = el.parentElement, hidden = false;
  // the element must fit the visible part of every scrolling ancestor
  while (box && box !== document.body) {
    const s = getComputedStyle(box);
    if (['auto', 'scroll', 'hidden'].includes(s.overflowX) && box.scrollWidth > box.clientWidth + 1) {
      hidden = true; break;
    }
    box = box.parentElement;
  }
  if (hidden || r.right > W + 1)
    out.push(el.tagName + ' ' + (el.innerText || el.src || '').slice(0, 60).replace(/\\s+/g, ' '));
}
return out;
"""


@pytest.fixture(scope="module")
def every_page(browser, site):
    """Each page of the book opened once: ``{page: (content cut at 1400 px, links)}``."""
    out = {}
    for rel in _pages():
        _open(browser, urljoin(site, rel))
        cut = browser.execute_script(_OVERFLOW)
        links = browser.execute_script(
            "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
        out[rel] = (cut, links)
    return out


def test_no_horizontal_overflow_at_1400px(every_page):
    cut = {rel: c[:3] for rel, (c, _) in every_page.items() if c}
    assert not cut, f"content wider than its box at {WIDTH} px: {cut}"


def test_every_internal_link_resolves(every_page):
    broken, seen = [], {}
    for rel, (_, links) in every_page.items():
        for link in links:
            url, frag = urldefrag(link)
            if urlparse(url).hostname != "127.0.0.1":
                continue
            target = HTML / urlparse(url).path.lstrip("/")
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{rel} -> {link}")
                continue
            if frag and target.suffix == ".html":
                ids = seen.setdefault(target, set(re.findall(
                    r'id="([^"]+)"', target.read_text(encoding="utf-8"))))
                if frag not in ids:
                    broken.append(f"{rel} -> {link} (no anchor)")
    assert not broken, f"{len(broken)} broken internal links: {broken[:5]}"
