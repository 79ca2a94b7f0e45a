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
* **no errors in the browser**: a page whose console reports an uncaught
  exception or a resource that failed to load fails the check;
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
import http.server
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
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

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
    "--enable-logging=stderr",
    "--v=0",
)
# Console lines Chromium logs for the page itself (--enable-logging=stderr).
_CONSOLE = re.compile(r":CONSOLE\(\d+\)\] \"(?P<message>.*)\", source: (?P<source>\S*)")
_PAGE_ERRORS = ("Uncaught", "Failed to load resource")


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
class BrowserRun:
    stdout: str
    console_errors: list[str]


class Chromium:
    def __init__(self, executable: str) -> None:
        self.executable = executable

    def run(self, url: str, *extra: str) -> BrowserRun:
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
        errors = []
        for line in err.decode(errors="replace").splitlines():
            match = _CONSOLE.search(line)
            if match and any(word in match["message"] for word in _PAGE_ERRORS):
                errors.append(f"{match['message']} ({match['source']})")
        return BrowserRun(out.decode(errors="replace"), errors)

    def dom(self, url: str) -> tuple[Page, list[str]]:
        run = self.run(url, "--dump-dom")
        return parse_page(run.stdout), run.console_errors

    def screenshot(self, url: str, path: Path) -> list[str]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        run = self.run(url, f"--screenshot={path}", f"--window-size={_WINDOW[0]},{_WINDOW[1]}")
        return run.console_errors


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
        if not ok:
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
    page, errors = browser.dom(urljoin(base, "index.html"))
    report.check(not errors, f"index.html: browser console errors: {errors}")
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
    loaded = 0
    for href, text in index.sidebar:
        url, _ = urldefrag(urljoin(urljoin(base, "index.html"), href))
        if url in seen:
            continue
        seen.add(url)
        page, errors = browser.dom(url)
        loaded += 1
        name = url.removeprefix(base)
        report.check(not errors, f"{name}: browser console errors: {errors}")
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
    print(f"navigation: {loaded} sidebar pages loaded in Chromium")


def take_screenshots(browser: Chromium, base: str, out: Path, report: Report) -> None:
    for name, rel in (("index", "index.html"), ("api", "api/index.html")):
        path = out / f"{name}.png"
        errors = browser.screenshot(urljoin(base, rel), path)
        report.check(not errors, f"{rel}: browser console errors: {errors}")
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
