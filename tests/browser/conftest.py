"""Browser-test fixtures: the app (two tiny seeded models) on a free loopback port, and Playwright
driving the system Chromium (Debian package `chromium`; browsers are never downloaded).
Screenshots go to `test-artifacts/` at the repository root (git-ignored)."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import shutil  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import urlparse  # noqa: E402

import pytest  # noqa: E402

CHROMIUM = os.environ.get("ZONKEY_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def models():
    """Two tiny models with seeded random weights; the first (seed 0) is the default."""
    from app.models import ModelRegistry
    from app.service import ModelService

    return ModelRegistry.of([ModelService.tiny(seed=0), ModelService.tiny(seed=1)])


@pytest.fixture(scope="session")
def app_url(models):
    from app.ui import serve_in_background

    with serve_in_background(models) as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("no system chromium (install the Debian package `chromium`)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class PageLog:
    """Console messages, page errors and requests of one page, to assert on."""

    def __init__(self, page, app_url: str):
        self.console: list[tuple[str, str]] = []
        self.page_errors: list[str] = []
        self.requests: list[str] = []
        self.local_host = urlparse(app_url).netloc
        page.on("console", lambda m: self.console.append((m.type, m.text)))
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r.url))

    def errors(self) -> list[str]:
        return [text for kind, text in self.console if kind == "error"] + self.page_errors

    def external_requests(self) -> list[str]:
        out = []
        for url in self.requests:
            p = urlparse(url)
            if p.scheme in ("data", "blob", "about"):
                continue
            if p.netloc != self.local_host:
                out.append(url)
        return out


@pytest.fixture
def page(browser, app_url):
    context = browser.new_context(viewport={"width": 1280, "height": 1400})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    yield pg
    context.close()


@pytest.fixture
def plog(page, app_url):
    return PageLog(page, app_url)


@pytest.fixture
def shot(request):
    """shot(page, name): a full-page screenshot under test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)

    def take(pg, name: str) -> Path:
        path = ARTIFACTS / f"{request.node.name}-{name}.png"
        pg.screenshot(path=str(path), full_page=True)
        return path

    return take
