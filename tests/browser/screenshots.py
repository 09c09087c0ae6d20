"""Real headless Chromium against a real server: shared helpers, and a script that screenshots every recipient page.

Run from the project root (needs Debian's chromium and chromium-driver, and selenium):

    python -m tests.browser.screenshots          # or: python tests/browser/screenshots.py

PNG files at 360 px wide land in docs/screenshots/.
"""
from __future__ import annotations

import re
import shutil
import sys
import tempfile
import threading
from contextlib import contextmanager
from email import policy
from email.parser import BytesParser
from pathlib import Path
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = PROJECT_ROOT / "docs" / "screenshots"
WIDTH = 360
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", f"--window-size={WIDTH},800",
)
LINK = re.compile(r"https?://[^\s<>\"]+")


def chromium_path() -> str | None:
    """The Chromium binary, or None (install with: apt-get install -y chromium chromium-driver)."""
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def chromedriver_path() -> str | None:
    return shutil.which("chromedriver") or (
        "/usr/lib/chromium/chromedriver" if Path("/usr/lib/chromium/chromedriver").exists() else None)


# -- a real server ------------------------------------------------------------------------

@contextmanager
def serve(app):
    """Serve `app` with werkzeug in a thread; PC_BASE_URL follows the chosen port. Yields the base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    app.config["PC_BASE_URL"] = base
    thread = threading.Thread(target=server.serve_forever, name="pc-test-server", daemon=True)
    thread.start()
    try:
        yield base
    finally:
        server.shutdown()
        thread.join(timeout=10)


# -- a real browser -----------------------------------------------------------------------

@contextmanager
def chromium(download_dir: Path):
    """Headless Chromium driven by Selenium through Debian's chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_binary = chromium_path(), chromedriver_path()
    if not binary or not driver_binary:
        raise RuntimeError("Chromium not found: apt-get install -y chromium chromium-driver")
    profile = Path(tempfile.mkdtemp(prefix="pc-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_experimental_option("prefs", {
        "download.default_directory": str(download_dir), "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(executable_path=driver_binary), options=options)
    try:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
        phone(driver)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def phone(driver, height: int = 800) -> None:
    """Lay pages out as on a 360 px wide phone."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": True})


def screenshot(driver, name: str, folder: Path = SCREENSHOTS) -> Path:
    """A full-page PNG of the current page at 360 px wide."""
    folder.mkdir(parents=True, exist_ok=True)
    settled(driver)
    height = driver.execute_script("return Math.ceil(document.documentElement.scrollHeight)")
    phone(driver, max(int(height), 400))
    png = driver.get_screenshot_as_png()
    phone(driver)
    target = folder / f"{name}.png"
    target.write_bytes(png)
    return target


def desktop(driver, name: str, folder: Path = SCREENSHOTS) -> Path:
    """A full-page PNG of the current page at 1280 px wide (then back to the phone width)."""
    folder.mkdir(parents=True, exist_ok=True)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False})
    settled(driver)
    height = driver.execute_script("return Math.ceil(document.documentElement.scrollHeight)")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1280, "height": max(int(height), 600), "deviceScaleFactor": 1, "mobile": False})
    target = folder / f"{name}.png"
    target.write_bytes(driver.get_screenshot_as_png())
    phone(driver)
    return target


def settled(driver, timeout: float = 10) -> None:
    """Wait until the current page has loaded completely."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: d.execute_script("return document.readyState") == "complete")


def submit(driver, button) -> None:
    """Click a form button and wait for the next page (not for a download)."""
    html = driver.find_element("tag name", "html")
    button.click()
    next_page(driver, html)


def next_page(driver, html) -> None:
    """Wait until the page whose <html> element is `html` has been replaced by the next one, loaded."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    def navigated(_):
        # Mid-navigation Chromium may answer "node does not belong to the
        # document" instead of "stale element": both mean the page changed.
        try:
            return expected_conditions.staleness_of(html)(driver)
        except WebDriverException as error:
            return "does not belong to the document" in str(error)

    WebDriverWait(driver, 20).until(navigated)
    settled(driver)


def fits_the_screen(driver) -> bool:
    """No sideways scrolling at the width the page is laid out for (360 px unless a test set another)."""
    return driver.execute_script(
        "return document.documentElement.scrollWidth <= document.documentElement.clientWidth")


# -- mail -------------------------------------------------------------------------------

def last_link(app, to: str) -> str:
    """The path of the link in the newest outbox message to `to`."""
    folder = Path(app.config["PC_INSTANCE_PATH"]) / "outbox"
    for path in sorted(folder.glob("*.eml"), reverse=True):
        with path.open("rb") as fh:
            message = BytesParser(policy=policy.default).parse(fh)
        if message["To"] == to:
            text = message.get_body(preferencelist=("plain",)).get_content()
            return urlsplit(LINK.search(text).group(0)).path
    raise AssertionError(f"no mail to {to}")


# -- demo data and the screenshot walk -----------------------------------------------------

def demo_app(folder: Path):
    """An app on a fresh SQLite database with three topics and one contact."""
    from preference_center import contacts, create_app, ledger
    from preference_center.extensions import db
    from preference_center.models import Topic

    app = create_app({
        "PC_ENV": "testing", "TESTING": False, "PC_INSTANCE_PATH": str(folder / "instance"),
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'demo.sqlite3'}",
        "PC_BROKER_URL": f"sqla+sqlite:///{folder / 'broker.sqlite3'}",
        "PC_SECRET_KEYS": ["screenshot-secret-000000000"], "PC_SUPPRESSION_KEY": "screenshot-suppression",
        "PC_RATELIMITS_ENABLED": False, "PC_MAIL_TRANSPORT": "outbox", "PC_SUBSCRIBE_MIN_SECONDS": 0,
    })
    with app.app_context():
        db.create_all()
        ledger.ensure_head()
        for key, name, basis, description, relationships in (
            ("news", "Monthly newsletter", "consent", "Product news and stories, once a month.", []),
            ("events", "Events and webinars", "consent", "Invitations to events near you.", []),
            ("tips", "Tips for customers", "legitimate_interest", "How to get more from what you bought.",
             ["customer"]),
        ):
            db.session.add(Topic(key=key, name=name, kind="marketing", legal_basis=basis, description=description,
                                 default_relationships=relationships))
        db.session.add(Topic(key="orders", name="Orders and invoices", kind="system", legal_basis="contract",
                             description="Confirmations, invoices and delivery notices.", default_relationships=[]))
        db.session.flush()
        contact, _ = contacts.upsert("ana@example.com", {"name": "Ana García", "relationship": "customer"},
                                     source="import:demo")
        news = db.session.scalar(db.select(Topic).where(Topic.key == "news"))
        contacts.record_consent(contact, action="grant", topic=news, source="subscribe-form",
                                consent_text_version="1", confirmed=True, ip="192.0.2.10", user_agent="Demo")
        db.session.commit()
    return app


def walk(folder: Path, out: Path = SCREENSHOTS) -> list[Path]:
    """Visit every recipient page in Chromium and screenshot it."""
    from selenium.webdriver.common.by import By

    from preference_center import links
    from preference_center.extensions import db
    from preference_center.models import Contact, Topic

    app = demo_app(folder)
    shots = []
    with serve(app) as base, chromium(folder / "downloads") as driver:
        with app.app_context():
            contact = db.session.scalar(db.select(Contact))
            news = db.session.scalar(db.select(Topic).where(Topic.key == "news"))
            p, u = links.make(links.PREFERENCES, contact), links.make(links.UNSUBSCRIBE, contact, news.id)
        driver.get(f"{base}/p/{p}")
        shots.append(screenshot(driver, "preferences", out))
        driver.get(f"{base}/p/{p}?lang=es")
        shots.append(screenshot(driver, "preferences-es", out))
        driver.get(f"{base}/p/{p}?lang=en")
        driver.get(f"{base}/u/{u}")
        shots.append(screenshot(driver, "unsubscribe", out))
        submit(driver, driver.find_element(By.CSS_SELECTOR, "main form button"))
        shots.append(screenshot(driver, "unsubscribed", out))
        driver.get(f"{base}/subscribe")
        shots.append(screenshot(driver, "subscribe", out))
        driver.find_element(By.ID, "email").send_keys("new@example.com")
        driver.find_element(By.ID, "topic-events").click()
        submit(driver, driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]"))
        shots.append(screenshot(driver, "subscribe-sent", out))
        driver.get(base + last_link(app, "new@example.com"))
        shots.append(screenshot(driver, "confirm", out))
        submit(driver, driver.find_element(By.CSS_SELECTOR, "main form button"))
        shots.append(screenshot(driver, "confirmed", out))
        driver.get(f"{base}/p/{p}/data")
        shots.append(screenshot(driver, "data", out))
        submit(driver, driver.find_element(By.XPATH, "//button[contains(., 'download link')]"))
        shots.append(screenshot(driver, "check-inbox", out))
        driver.get(base + last_link(app, "ana@example.com"))
        shots.append(screenshot(driver, "download", out))
        driver.get(f"{base}/p/not-a-valid-link")
        shots.append(screenshot(driver, "link-error", out))
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    return shots


def main() -> int:
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    if not chromium_path():
        print("Chromium not found: apt-get install -y chromium chromium-driver", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="pc-screenshots-") as tmp:
        for shot in walk(Path(tmp)):
            print(shot.relative_to(PROJECT_ROOT))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(PROJECT_ROOT))
    sys.exit(main())


def css(driver, selector):
    """The first element matching a CSS selector."""
    return driver.find_element("css selector", selector)
