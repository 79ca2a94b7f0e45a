"""Check the built documentation in a real browser: Debian's headless Chromium.

``make docs`` builds the site; this serves ``docs/_build/html`` from a
loopback HTTP server and checks what a reader would meet:

* **the index renders**: Chromium loads it and its DOM (``--dump-dom``, after
  the page's scripts ran) has the site's title, the heading, furo's sidebar
  navigation with links in it, and the ``data-theme`` furo's script sets;
* **the navigation works**: every link of the sidebar, loaded in Chromium,
  gives a page whose title and heading are the link's text, with that link
  marked as the current page in its own sidebar;
* **no broken internal links**: every ``href`` and ``src`` of every page
  that stays on the site is fetched from the server (200, or the check
  fails), and every ``#fragment`` names an ``id`` of the page it points to;
  the SVG images parse as XML;
* **the images render**: on each of those pages, loaded by Chromium, every
  ``<img>`` has loaded and has a size (an SVG that does not render fails);
* **screenshots** of the index and of the API reference's first page
  (1280 x 1600) in ``build/docs-screenshots/``, for a person to look at.

Every Chromium run has a time limit and a fresh, empty profile, and gets the
flags that keep it off the network (no background requests, no component
updates, no sync). Only 127.0.0.1 is served or fetched.

Usage: ``python tools/docs_check.py [HTML_DIR] [--screenshots DIR]
[--chromium PATH]``; exits 1 if any check fails, 2 if it cannot start
(no built site, no Chromium).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import html
import http.server
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlencode, urljoin, urlsplit

ROOT = Path(__file__).resolve().parent.parent

# One page load, and a screenshot (Chromium's first start on a new profile
# takes a few seconds here; a page load well under one).
_CHROMIUM_TIMEOUT_SECONDS = 60
_FETCH_TIMEOUT_SECONDS = 10
# After the time limit, how long Chromium's process group gets after TERM.
_GRACE_SECONDS = 5
_WINDOW = (1280, 1600)

# The probe's flags: headless, no sandbox (root), and nothing that would
# reach out to the network on its own.
_CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)

# A page of the check's own, served beside the site: it loads a page of the
# site in a same-origin frame and, once the frame has loaded (its images
# included), writes the frame's DOM and the images that did not render into
# its own, which ``--dump-dom`` then prints.
PROBE_PATH = "/__docs_check_probe__.html"
_PROBE = b"""<!doctype html>
<meta charset="utf-8"><title>docs check probe</title>
<body><pre id="probe-result">pending</pre>
<script>
const frame = document.createElement("iframe");
frame.style.width = "1280px";
frame.style.height = "1600px";
frame.addEventListener("load", () => {
  const doc = frame.contentDocument;
  const images = Array.from(doc.images);
  const broken = images
    .filter((img) => !img.complete || img.naturalWidth === 0)
    .map((img) => img.getAttribute("src"));
  document.getElementById("probe-result").textContent = JSON.stringify({
    html: doc.documentElement.outerHTML,
    images: images.length,
    broken: broken,
  });
});
frame.src = new URLSearchParams(location.search).get("page");
document.body.appendChild(frame);
</script>
"""
_PROBE_RESULT = re.compile(r'<pre id="probe-result">(.*?)</pre>', re.S)


class CheckError(Exception):
    """The check cannot run at all (exit 2)."""


# -- parsing the pages ---------------------------------------------------------


@dataclass
class Page:
    """What one HTML page links to and which ids it defines."""

    title: str = ""
    h1: str = ""
    ids: set[str] = field(default_factory=set)
    links: list[str] = field(default_factory=list)  # href of <a>, <link>
    resources: list[str] = field(default_factory=list)  # src of <img>, <script>
    sidebar: list[tuple[str, str]] = field(default_factory=list)  # (href, text)
    current: list[str] = field(default_factory=list)  # sidebar links marked current
    body_attrs: dict[str, str] = field(default_factory=dict)


class _PageParser(HTMLParser):
    """Fills a :class:`Page`; knows furo's sidebar (``.sidebar-tree``)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._stack: list[tuple[str, set[str]]] = []
        self._title: list[str] | None = None
        self._h1: list[str] | None = None
        self._link: tuple[str, bool, list[str]] | None = None  # (href, current, text)

    def _inside(self, tag: str | None = None, cls: str | None = None) -> set[str] | None:
        """The classes of the innermost open element that matches, if any."""
        for name, classes in reversed(self._stack):
            if (tag is None or name == tag) and (cls is None or cls in classes):
                return classes
        return None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        classes = set(values.get("class", "").split())
        if "id" in values:
            self.page.ids.add(values["id"])
        if tag == "a" and "name" in values:
            self.page.ids.add(values["name"])
        if tag == "body":
            self.page.body_attrs = values
        # The page's own <title>, not one inside an inline SVG icon.
        if tag == "title" and self._inside("svg") is None and not self.page.title:
            self._title = []
        if tag == "h1" and not self.page.h1:
            self._h1 = []
        if tag in ("a", "link") and "href" in values:
            self.page.links.append(values["href"])
        if tag in ("img", "script", "iframe", "source") and values.get("src"):
            self.page.resources.append(values["src"])
        if tag == "a" and self._inside(cls="sidebar-tree") is not None:
            item = self._inside("li") or set()
            self._link = (values.get("href", ""), "current-page" in item, [])
        if tag not in _VOID:
            self._stack.append((tag, classes))

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        if tag == "title" and self._title is not None:
            self.page.title = _clean("".join(self._title))
            self._title = None
        if tag == "h1" and self._h1 is not None:
            self.page.h1 = _clean("".join(self._h1))
            self._h1 = None
        if tag == "a" and self._link is not None:
            href, current, text = self._link
            self.page.sidebar.append((href, _clean("".join(text))))
            if current:
                self.page.current.append(_clean("".join(text)))
            self._link = None
        # Pop up to the matching start tag (HTML lets some end tags go unsaid).
        for index in range(len(self._stack) - 1, -1, -1):
            if self._stack[index][0] == tag:
                del self._stack[index:]
                break

    def handle_data(self, data: str) -> None:
        for sink in (self._title, self._h1, self._link[2] if self._link else None):
            if sink is not None:
                sink.append(data)


# Elements without an end tag.
_VOID = frozenset(
    (
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
    )
)


def _clean(text: str) -> str:
    # Sphinx ends headings with a pilcrow link ("¶"); furo's title has it not.
    return " ".join(text.replace("\N{PILCROW SIGN}", "").split())


def parse_page(html: str) -> Page:
    parser = _PageParser()
    parser.feed(html)
    parser.close()
    return parser.page


# -- the server ----------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        if urlsplit(self.path).path != PROBE_PATH:
            super().do_GET()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(_PROBE)))
        self.end_headers()
        self.wfile.write(_PROBE)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # Chromium closes connections it no longer needs (a favicon's 404)
        # before the answer is written: not a fault of the site.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (a free port) while the block runs."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="docs-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=_FETCH_TIMEOUT_SECONDS) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


# -- Chromium ------------------------------------------------------------------


@dataclass
class Rendered:
    """A page as Chromium rendered it."""

    page: Page
    images: int
    broken_images: list[str]


class Chromium:
    def __init__(self, executable: str) -> None:
        self.executable = executable

    def run(self, url: str, *extra: str) -> str:
        """Load ``url`` once, in a new profile, with ``extra`` flags."""
        with tempfile.TemporaryDirectory(prefix="asgigreen-docs-chromium-") as profile:
            argv = [self.executable, *_CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url]
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                out, err = proc.communicate(timeout=_CHROMIUM_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                _end_group(proc)
                raise AssertionError(
                    f"Chromium did not finish loading {url} within {_CHROMIUM_TIMEOUT_SECONDS} s"
                ) from None
            finally:
                if proc.poll() is None:
                    _end_group(proc)
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-5:]
            raise AssertionError(
                f"Chromium exited with {proc.returncode} on {url}: " + " | ".join(tail)
            )
        return out.decode(errors="replace")

    def render(self, base: str, url: str) -> Rendered:
        """Load ``url`` (a page of the site at ``base``) through the probe page."""
        dom = self.run(urljoin(base, PROBE_PATH) + "?" + urlencode({"page": url}), "--dump-dom")
        match = _PROBE_RESULT.search(dom)
        if match is None or match[1] == "pending":
            raise AssertionError(f"Chromium did not finish rendering {url} in the probe page")
        result = json.loads(html.unescape(match[1]))
        return Rendered(parse_page(result["html"]), result["images"], result["broken"])

    def screenshot(self, url: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        self.run(url, f"--screenshot={path}", f"--window-size={_WINDOW[0]},{_WINDOW[1]}")


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=_GRACE_SECONDS)
            return
        except subprocess.TimeoutExpired:
            continue


def find_chromium(given: str | None) -> str:
    for candidate in (given, "chromium", "/usr/bin/chromium"):
        if candidate and (path := shutil.which(candidate)):
            return path
    raise CheckError(
        "Chromium not found: install Debian's package (apt-get install chromium) "
        "or pass --chromium PATH"
    )


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise AssertionError(f"{path} is not a PNG file")
    width, height = struct.unpack(">II", head[16:24])
    return width, height


# -- the checks ----------------------------------------------------------------


class Report:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def check(self, ok: bool, message: str) -> bool:
        if not ok and message not in self.failures:
            self.failures.append(message)
        return ok


def check_links(base: str, html_dir: Path, report: Report) -> dict[str, Page]:
    """Every page's internal links, resources and anchors; returns the pages."""
    pages: dict[str, Page] = {}
    for path in sorted(html_dir.rglob("*.html")):
        rel = path.relative_to(html_dir).as_posix()
        if rel.startswith(("_static/", "_sources/")):
            continue  # the theme's and the sources' own files, not pages
        pages[rel] = parse_page(path.read_text(encoding="utf-8"))
    fetched: dict[str, int] = {}
    checked_links = checked_anchors = 0
    svgs: set[str] = set()
    for rel, page in pages.items():
        page_url = urljoin(base, rel)
        for target in page.links + page.resources:
            url, fragment = urldefrag(urljoin(page_url, target))
            if not url.startswith(base):
                continue  # another site: not fetched (no network here)
            if url not in fetched:
                status, body = fetch(url)
                fetched[url] = status
                if url.endswith(".svg") and status == 200:
                    svgs.add(url)
                    try:
                        ET.fromstring(body)
                    except ET.ParseError as exc:
                        report.check(False, f"{url}: not a well-formed SVG ({exc})")
            checked_links += 1
            if not report.check(fetched[url] == 200, f"{rel}: {target} -> HTTP {fetched[url]}"):
                continue
            if fragment:
                checked_anchors += 1
                target_rel = (
                    unquote(urlsplit(url).path).removeprefix(urlsplit(base).path) or "index.html"
                )
                if target_rel.endswith("/"):
                    target_rel += "index.html"
                target_page = pages.get(target_rel)
                report.check(
                    target_page is not None and unquote(fragment) in target_page.ids,
                    f"{rel}: {target}: no id {fragment!r} in {target_rel}",
                )
    print(
        f"links: {len(pages)} pages, {checked_links} internal links and resources "
        f"({len(fetched)} distinct URLs, {len(svgs)} SVG images), {checked_anchors} anchors"
    )
    return pages


def check_index(browser: Chromium, base: str, project: str, report: Report) -> Page:
    """The index in Chromium; returns it as rendered."""
    rendered = browser.render(base, urljoin(base, "index.html"))
    page = rendered.page
    report.check(
        not rendered.broken_images, f"index.html: images not rendered: {rendered.broken_images}"
    )
    report.check(
        page.title.startswith(project), f"index.html: title {page.title!r} is not {project!r}"
    )
    report.check(page.h1 == project, f"index.html: heading {page.h1!r}, expected {project!r}")
    report.check(
        "data-theme" in page.body_attrs,
        "index.html: <body> has no data-theme: furo's script did not run",
    )
    report.check(
        len(page.sidebar) >= 5, f"index.html: sidebar navigation has {len(page.sidebar)} links"
    )
    print(
        f"index: title {page.title!r}, heading {page.h1!r}, "
        f"theme {page.body_attrs.get('data-theme')!r}, {len(page.sidebar)} sidebar links"
    )
    return page


def check_navigation(browser: Chromium, base: str, index: Page, report: Report) -> None:
    """Every sidebar link loads, in Chromium, the page it names."""
    seen: set[str] = set()
    loaded = images = 0
    for href, text in index.sidebar:
        url, _ = urldefrag(urljoin(urljoin(base, "index.html"), href))
        if url in seen:
            continue
        seen.add(url)
        rendered = browser.render(base, url)
        page = rendered.page
        loaded += 1
        images += rendered.images
        name = url.removeprefix(base)
        report.check(
            not rendered.broken_images, f"{name}: images not rendered: {rendered.broken_images}"
        )
        report.check(
            page.h1 == text, f"{name}: sidebar link {text!r} led to a page headed {page.h1!r}"
        )
        report.check(
            page.title.startswith(text),
            f"{name}: sidebar link {text!r} led to a page titled {page.title!r}",
        )
        report.check(
            text in page.current,
            f"{name}: its sidebar does not mark {text!r} as the current page "
            f"(it marks {page.current})",
        )
    print(f"navigation: {loaded} sidebar pages loaded in Chromium, {images} images on them checked")


def take_screenshots(browser: Chromium, base: str, out: Path, report: Report) -> None:
    for name, rel in (("index", "index.html"), ("api", "api/index.html")):
        path = out / f"{name}.png"
        browser.screenshot(urljoin(base, rel), path)
        if not report.check(path.exists(), f"{rel}: Chromium wrote no screenshot"):
            continue
        size = png_size(path)
        report.check(size == _WINDOW, f"{path}: {size[0]}x{size[1]}, expected {_WINDOW}")
        print(
            f"screenshot: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} "
            f"({size[0]}x{size[1]}, {path.stat().st_size // 1024} KB)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html_dir", nargs="?", default=str(ROOT / "docs/_build/html"))
    parser.add_argument("--screenshots", default=str(ROOT / "build/docs-screenshots"))
    parser.add_argument("--chromium", help="the Chromium executable (default: chromium)")
    parser.add_argument("--project", default="asgigreen", help="the site's title and heading")
    args = parser.parse_args(argv)
    html_dir = Path(args.html_dir).resolve()
    started = time.monotonic()
    try:
        if not (html_dir / "index.html").is_file():
            raise CheckError(f"{html_dir}/index.html not found: build the site first (make docs)")
        browser = Chromium(find_chromium(args.chromium))
    except CheckError as exc:
        print(f"docs check: cannot run: {exc}", file=sys.stderr)
        return 2
    report = Report()
    with serve(html_dir) as base:
        check_links(base, html_dir, report)
        try:
            index = check_index(browser, base, args.project, report)
            check_navigation(browser, base, index, report)
            take_screenshots(browser, base, Path(args.screenshots).resolve(), report)
        except AssertionError as exc:
            report.check(False, str(exc))
    for failure in report.failures:
        print(f"  FAIL {failure}")
    elapsed = time.monotonic() - started
    verdict = "OK" if not report.failures else f"FAILED ({len(report.failures)} problems)"
    print(f"docs check: {verdict} in {elapsed:.1f} s")
    return 0 if not report.failures else 1


if __name__ == "__main__":
    sys.exit(main())
