"""The staff pages in real headless Chromium against a real server: sign in, import, compose, schedule, report."""
from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import select

from preference_center import campaigns, contacts, sending, staff
from preference_center.extensions import db
from preference_center.models import Campaign

from ..helpers import PASSWORD, factories
from .screenshots import chromium_path, css, desktop, fits_the_screen, screenshot, serve, settled, submit

# The docs' admin screenshots are refreshed with
# PC_SCREENSHOTS_DIR=docs/screenshots pytest tests/browser/test_admin_browser.py;
# an ordinary test run keeps its pictures out of the working tree.
SHOTS = Path(os.environ.get("PC_SCREENSHOTS_DIR") or tempfile.mkdtemp(prefix="pc-admin-shots-"))

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(chromium_path() is None,
                       reason="Chromium not found; install it with: apt-get install -y chromium chromium-driver"),
]

CSV = ("Email,Name,Relationship\nana@example.com,Ana García,customer\nben@example.com,Ben Ode,prospect\n"
       "not-an-address,X,\n")


@pytest.fixture
def site(app):
    with app.app_context():
        staff.create_user("mia@example.com", "marketer", PASSWORD)
        topic = factories.topic("news")
        topic.name, topic.description = "Monthly newsletter", "Product news, once a month."
        factories.topic("orders", kind="system", basis="contract")
        db.session.commit()
    with serve(app) as base:
        yield base


def select_value(driver, selector, value):
    from selenium.webdriver.support.ui import Select

    Select(css(driver, selector)).select_by_value(value)


def test_a_marketer_signs_in_imports_a_csv_and_schedules_a_campaign_then_reads_its_report(app, site, browser, tmp_path):
    # Sign in.
    browser.get(f"{site}/admin/")
    settled(browser)
    assert "/admin/login" in browser.current_url
    screenshot(browser, "admin-login", SHOTS)
    css(browser, "#email").send_keys("mia@example.com")
    css(browser, "#password").send_keys(PASSWORD)
    submit(browser, css(browser, "main form button[type=submit]"))
    assert "mia@example.com" in browser.page_source and fits_the_screen(browser)
    screenshot(browser, "admin-home", SHOTS)

    # Import a small CSV: upload, map, state basis and source, preview, import.
    upload = tmp_path / "fair.csv"
    upload.write_text(CSV, encoding="utf-8-sig")
    browser.get(f"{site}/admin/imports")
    css(browser, "#file").send_keys(str(upload))
    submit(browser, css(browser, "main form button[type=submit]"))
    select_value(browser, "#legal_basis", "consent")
    css(browser, "#source_text").send_keys("Trade fair 2026 sign-up sheet")
    select_value(browser, "#topic", "news")
    css(browser, "#consent_collected").click()
    css(browser, "#confirmed_opt_in").click()
    screenshot(browser, "admin-import-mapping", SHOTS)
    submit(browser, browser.find_element("xpath", "//button[contains(., 'Preview the import')]"))
    page = browser.page_source
    assert "2</strong> new contacts" in page and "not-an-address" in page
    assert fits_the_screen(browser)
    screenshot(browser, "admin-import-preview", SHOTS)
    submit(browser, browser.find_element("xpath", "//button[starts-with(normalize-space(.), 'Import 2 contacts')]"))
    assert "Import finished: 2 new" in browser.page_source
    screenshot(browser, "admin-import-done", SHOTS)
    with app.app_context():
        ana = contacts.find("ana@example.com")
        assert ana.name == "Ana García"
        assert {s["topic"]: s["state"] for s in contacts.subscriptions_view(ana)}["news"] == "subscribed"

    # Compose with a live preview for a chosen contact, then save the draft.
    browser.get(f"{site}/admin/campaigns/new")
    css(browser, "#name").send_keys("December news")
    select_value(browser, "#topic", "news")
    css(browser, "#subject").send_keys("News for {{ contact.name }}")
    css(browser, "#html").send_keys("<h1>Hello {{ contact.name }}</h1><p>Our winter update.</p>")
    css(browser, "#text").send_keys("Hello {{ contact.name }}, our winter update.")
    css(browser, "#preview_email").send_keys("ana@example.com")
    submit(browser, browser.find_element("xpath", "//button[@value='preview']"))
    frame = css(browser, "iframe.mail-frame")
    assert frame.get_attribute("sandbox") == ""
    browser.switch_to.frame(frame)
    assert "Hello Ana García" in browser.find_element("tag name", "h1").text
    browser.switch_to.default_content()
    assert fits_the_screen(browser)
    screenshot(browser, "admin-campaign-preview", SHOTS)
    submit(browser, browser.find_element("xpath", "//button[@value='save']"))
    assert "Draft saved" in browser.page_source

    # Schedule in Madrid time: 09:30 on 1 July 2030 is 07:30 UTC.
    browser.execute_script("arguments[0].value = '2030-07-01T09:30'", css(browser, "#at"))
    select_value(browser, "#zone", "Europe/Madrid")
    submit(browser, browser.find_element("xpath", "//button[normalize-space(.)='Continue to confirmation']"))
    assert "2 recipients, at 2030-07-01 09:30 Europe/Madrid (07:30 UTC)" in browser.page_source
    submit(browser, browser.find_element("xpath", "//button[normalize-space(.)='Yes, schedule for 2 recipients']"))
    assert "Scheduled for 2030-07-01 09:30 Europe/Madrid (2030-07-01 07:30 UTC)" in browser.page_source
    screenshot(browser, "admin-campaign-scheduled", SHOTS)
    with app.app_context():
        campaign = db.session.scalar(select(Campaign))
        assert campaign.scheduled_at == dt.datetime(2030, 7, 1, 7, 30, tzinfo=dt.UTC)
        campaign_id = campaign.id

    # Send it now instead, let the engine run, and read the report.
    assert css(browser, "#at").get_attribute("value") == "2030-07-01T09:30"  # rescheduling starts from it
    browser.execute_script("arguments[0].value = ''", css(browser, "#at"))
    submit(browser, browser.find_element("xpath", "//button[normalize-space(.)='Continue to confirmation']"))
    assert "2 recipients, now" in browser.page_source
    submit(browser, browser.find_element("xpath", "//button[normalize-space(.)='Yes, send now to 2 recipients']"))
    with app.app_context():
        campaigns.start_due()
        while (batch := sending.plan_chunk(campaign_id, 100)) is not None:
            sending.send_batch(batch)
        sending.finish_campaign_if_done(campaign_id)
    submit(browser, browser.find_element("link text", "Report"))
    assert browser.find_element("id", "n-sent").text == "2"
    assert browser.find_element("id", "n-eligible").text == "2"
    assert browser.find_elements("css selector", "svg.bars rect.seg-sent")
    assert fits_the_screen(browser)
    screenshot(browser, "admin-report", SHOTS)
    desktop(browser, "admin-report-desktop", SHOTS)
