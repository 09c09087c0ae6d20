"""The recipient pages in real headless Chromium against a real server, at 360 px wide, without JavaScript of ours."""
from __future__ import annotations

import json
import time

import pytest

from preference_center import contacts, links
from preference_center.extensions import db
from preference_center.models import Contact

from ..helpers import grant, make_contact, states, token, topic_id
from .screenshots import chromium, chromium_path, fits_the_screen, last_link, serve, settled, submit

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(chromium_path() is None,
                       reason="Chromium not found; install it with: apt-get install -y chromium chromium-driver"),
]


@pytest.fixture
def app_config(app_config):
    return {**app_config, "PC_SUBSCRIBE_MIN_SECONDS": 0}


@pytest.fixture
def site(app):
    with serve(app) as base:
        yield base


@pytest.fixture
def downloads(tmp_path):
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


@pytest.fixture
def browser(downloads):
    with chromium(downloads) as driver:
        yield driver


@pytest.fixture
def ann(app, topics) -> int:
    contact_id = make_contact(app, "ann@example.com", relationship="customer", name="Ann")
    grant(app, contact_id, "news")
    return contact_id


def by_css(driver, selector):
    return driver.find_element("css selector", selector)


def test_preference_page_toggles_and_saves_with_the_keyboard(app, site, browser, ann):
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{site}/p/{token(app, links.PREFERENCES, ann)}")
    settled(browser)
    assert fits_the_screen(browser)
    tips = by_css(browser, "#topic-tips")
    assert tips.is_selected()
    tips.send_keys(Keys.SPACE)  # a keyboard user toggles the box…
    assert not tips.is_selected()
    save = by_css(browser, "main form button[type=submit]:not([form])")  # not the objection buttons
    html = browser.find_element("tag name", "html")
    save.send_keys(Keys.ENTER)  # …and saves
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 10).until(expected_conditions.staleness_of(html))
    settled(browser)
    assert "Your choices are saved." in browser.page_source
    assert states(app, ann) == {"news": "subscribed", "tips": "unsubscribed", "orders": "subscribed"}
    assert not by_css(browser, "#topic-tips").is_selected()


def test_unsubscribe_page_confirms_with_a_button(app, site, browser, ann):
    browser.get(f"{site}/u/{token(app, links.UNSUBSCRIBE, ann, topic_id(app, 'news'))}")
    settled(browser)
    assert states(app, ann)["news"] == "subscribed", "opening the page changes nothing"
    submit(browser, by_css(browser, "main form button"))
    assert "You are unsubscribed" in browser.page_source
    assert states(app, ann)["news"] == "unsubscribed"
    assert fits_the_screen(browser)


def test_subscribe_form_to_confirmed_subscription(app, site, browser, topics):
    browser.get(f"{site}/subscribe?lang=es")
    settled(browser)
    assert "Suscríbase a nuestro correo" in browser.page_source
    by_css(browser, "#email").send_keys("new@example.com")
    by_css(browser, "label[for=topic-news]").click()
    submit(browser, by_css(browser, "main form button[type=submit]"))
    assert "Revise su bandeja de entrada" in browser.page_source
    browser.get(site + last_link(app, "new@example.com"))
    settled(browser)
    with app.app_context():
        contact_id = contacts.find("new@example.com").id
    assert states(app, contact_id)["news"] == "unsubscribed", "pending until confirmed"
    submit(browser, by_css(browser, "main form button"))
    assert "Suscripción confirmada" in browser.page_source
    assert states(app, contact_id)["news"] == "subscribed"


def downloaded(target, seconds: float = 15) -> bool:
    """Chromium may show the final name (empty) before it moves the finished `.crdownload` file over it: wait until
    the file has content and nothing is still downloading."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (target.exists() and target.stat().st_size > 0
                and not any(p.suffix == ".crdownload" for p in target.parent.iterdir())):
            return True
        time.sleep(0.1)
    return False


def test_data_export_downloads_a_file_through_the_emailed_link(app, site, browser, downloads, ann):
    browser.get(f"{site}/p/{token(app, links.PREFERENCES, ann)}/data")
    settled(browser)
    assert fits_the_screen(browser)
    submit(browser, browser.find_element("xpath", "//button[contains(., 'download link')]"))
    assert "Check your inbox" in browser.page_source
    browser.get(site + last_link(app, "ann@example.com"))
    settled(browser)
    browser.find_element("xpath", "//button[contains(., 'Download JSON')]").click()
    target = downloads / "my-data.json"
    assert downloaded(target), f"no download in {list(downloads.iterdir())}"
    data = json.loads(target.read_text())
    assert data["profile"]["email"] == "ann@example.com"
    assert any(e["action"] == "grant" and e["topic"] == "news" for e in data["consent_history"])
    with app.app_context():
        assert db.session.get(Contact, ann).email == "ann@example.com"
