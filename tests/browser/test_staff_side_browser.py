"""The staff side in real headless Chromium: personalised compose with a live count and the confirmation
step, the contact list, the outbox under the CSP, and a branded preference page in Spanish; at 360 px
and 1280 px, with the keyboard where a person would use it."""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import select

from preference_center import actors, campaigns, contacts, links, sending, staff
from preference_center.commands import branding as branding_commands
from preference_center.extensions import db
from preference_center.models import Campaign, Contact, Delivery

from ..helpers import PASSWORD, factories
from .screenshots import chromium_path, css, desktop, fits_the_screen, screenshot, serve, settled, submit

# PC_SCREENSHOTS_DIR=docs/screenshots refreshes the docs' pictures; otherwise they go to a temporary folder.
SHOTS = Path(os.environ.get("PC_SCREENSHOTS_DIR") or tempfile.mkdtemp(prefix="pc-staff-shots-"))

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(chromium_path() is None,
                       reason="Chromium not found; install it with: apt-get install -y chromium chromium-driver"),
]

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82")


@pytest.fixture
def site(app):
    with app.app_context():
        staff.create_user("mia@example.com", "marketer", PASSWORD)
        news = factories.topic("news")
        news.name, news.description = "Monthly newsletter", "Product news, once a month."
        for email, name, company, relationship, locale in (
                ("ana@example.com", "ana garcía", "Lácteos Peña", "customer", "es"),
                ("bo@example.com", "Bo Ode", "", "prospect", "en"),
                ("cy@example.com", "", "Umbrella", "customer", "en")):
            person = factories.contact(email, name=name or None, company=company or None,
                                       relationship=relationship, locale=locale)
            contacts.record_consent(person, action="grant", topic=news, source="test", confirmed=True)
        db.session.commit()
    with serve(app) as base:
        yield base


def sign_in(browser, site):
    browser.get(f"{site}/admin/login")
    settled(browser)
    css(browser, "#email").send_keys("mia@example.com")
    css(browser, "#password").send_keys(PASSWORD)
    submit(browser, css(browser, "main form button[type=submit]"))


def wait_for(driver, condition, timeout: float = 10):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: condition())


def test_compose_counts_live_previews_personalised_and_confirms_before_sending(app, site, browser):
    from selenium.webdriver.common.keys import Keys

    sign_in(browser, site)
    browser.get(f"{site}/admin/campaigns/new")
    settled(browser)
    count = css(browser, "#audience-count strong")
    assert count.text == "3"
    css(browser, "#name").send_keys("Winter news")
    css(browser, "#subject").send_keys("{{ contact.first_name|default('Hello')|title }}, news for "
                                       "{{ contact.company or 'your team' }}")
    css(browser, "#text").send_keys("Dear {{ contact.name|title }}")
    css(browser, "#html").send_keys("<p>Hi {{ contact.name or 'there' }} at {{ contact.company|upper }}</p>")
    # Keyboard: tick "customer" with the space bar; the count follows without a reload.
    customer = css(browser, "input[name=relationships][value=customer]")
    customer.send_keys(Keys.SPACE)
    wait_for(browser, lambda: css(browser, "#audience-count strong").text == "2")
    css(browser, "#preview_email").send_keys("ana@example.com")
    submit(browser, browser.find_element("xpath", "//button[@value='preview']"))
    assert "Ana, news for Lácteos Peña" in browser.page_source
    frame = css(browser, "iframe.mail-frame")
    browser.switch_to.frame(frame)
    assert "Hi ana garcía at LÁCTEOS PEÑA" in browser.find_element("tag name", "p").text
    browser.switch_to.default_content()
    assert fits_the_screen(browser)
    screenshot(browser, "admin-compose-personalised", SHOTS)
    submit(browser, browser.find_element("xpath", "//button[@value='save']"))
    assert "Draft saved" in browser.page_source
    assert "Eligible now 2 recipients" in " ".join(css(browser, "dl.facts").text.split())

    # Empty time: the next page says "now" and the count; nothing is scheduled until confirmed.
    submit(browser, browser.find_element("xpath", "//button[normalize-space(.)='Continue to confirmation']"))
    assert "2 recipients, now" in css(browser, ".confirm-summary").text
    with app.app_context():
        assert db.session.scalar(select(Campaign.status)) == "draft"
    assert fits_the_screen(browser)
    screenshot(browser, "admin-confirm-sending", SHOTS)
    desktop(browser, "admin-confirm-sending-desktop", SHOTS)
    # The confirm button has the focus: Enter sends.
    html = browser.find_element("tag name", "html")
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    wait_for(browser, lambda: html.id != browser.find_element("tag name", "html").id)
    settled(browser)
    assert "to 2 recipients" in browser.page_source
    with app.app_context():
        campaign_id = db.session.scalar(select(Campaign.id))
        campaigns.start_due()
        while (batch := sending.plan_chunk(campaign_id, 100)) is not None:
            sending.send_batch(batch)
        assert sorted(db.session.scalars(select(Contact.email).join(Delivery, Delivery.contact_id == Contact.id)
                                         .where(Delivery.status == "sent"))) == ["ana@example.com", "cy@example.com"]


def test_the_contact_list_finds_accents_pages_and_confirms_bulk_actions(app, site, browser):
    sign_in(browser, site)
    browser.get(f"{site}/admin/contacts")
    settled(browser)
    assert "3 contacts match" in css(browser, ".list-total").text
    search = css(browser, "#q")
    search.send_keys("garcia")
    submit(browser, browser.find_element("xpath", "//button[normalize-space(.)='Filter']"))
    rows = browser.find_elements("css selector", "tbody tr")
    assert len(rows) == 1 and "ana@example.com" in rows[0].text
    assert fits_the_screen(browser)
    screenshot(browser, "admin-contacts", SHOTS)
    desktop(browser, "admin-contacts-desktop", SHOTS)
    css(browser, "input[name=id]").click()
    submit(browser, browser.find_element("xpath", "//button[normalize-space(.)='Continue…']"))
    assert "say why these addresses are suppressed" in browser.page_source  # nothing asked, nothing done
    css(browser, "input[name=id]").click()
    css(browser, "#reason").send_keys("asked by phone")
    submit(browser, browser.find_element("xpath", "//button[normalize-space(.)='Continue…']"))
    assert "Stop marketing mail to 1 contact?" in browser.page_source
    screenshot(browser, "admin-contacts-bulk-confirm", SHOTS)
    submit(browser, browser.find_element("xpath", "//button[normalize-space(.)='Yes, do it']"))
    assert "Done for 1 contact." in browser.page_source


def test_the_outbox_shows_the_whole_html_body_styled_under_the_csp(app, site, browser):
    from preference_center.admin import preview

    with app.app_context():
        news = factories.get_topic("news")
        body = "<h1>Winter news</h1>" + "<p>A long paragraph of news.</p>" * 40
        preview.send_test(news, "Winter", body, "Hi", to="mia@example.com", contact=None, campaign_id=None)
    browser.get(f"{site}/outbox/")
    settled(browser)
    # The stylesheet applies (the CSP blocks inline style, not our file).
    assert "serif" not in browser.execute_script("return getComputedStyle(document.body).fontFamily").split(",")[0]
    submit(browser, css(browser, "ul.mail a"))
    frame = css(browser, "iframe.mail-html")
    wait_for(browser, lambda: frame.size["height"] > 400)
    inner = browser.execute_script("return arguments[0].contentDocument.documentElement.scrollHeight", frame)
    assert frame.size["height"] >= inner  # the whole body, footer links included
    browser.switch_to.frame(frame)
    assert browser.find_elements("link text", "Manage your preferences")
    browser.switch_to.default_content()
    assert fits_the_screen(browser)
    screenshot(browser, "outbox-message", SHOTS)


def test_a_branded_preference_page_in_spanish_masks_the_address_and_takes_the_tracking_choice(app, site, browser):
    from selenium.webdriver.common.keys import Keys

    with app.app_context():
        branding_commands.save(actors.staff("boss@example.com"), {
            "org_name": "Lácteos Peña", "accent": "#7a1f5c", "privacy_url": "https://example.com/privacidad",
            "postal_address": "Calle Mayor 1, 28013 Madrid"}, logo_data=io.BytesIO(PNG).read(),
            logo_content_type="image/png")
        ana = contacts.find("ana@example.com")
        db.session.commit()
        url = f"{site}/p/{links.make(links.PREFERENCES, ana)}"
    browser.get(url)
    settled(browser)
    text = css(browser, "main").text
    assert "Para a•••@example.com" in text and "ana@example.com" not in browser.page_source
    assert "Lácteos Peña" in css(browser, "header").text
    assert browser.execute_script("return document.querySelector('img.brand-logo').naturalWidth") == 1
    assert browser.find_element("link text", "Política de privacidad").get_attribute("href") == \
        "https://example.com/privacidad"
    button = css(browser, "main form button[type=submit]")
    assert browser.execute_script("return getComputedStyle(arguments[0]).backgroundColor", button) == \
        "rgb(122, 31, 92)"
    assert fits_the_screen(browser)
    # Keyboard: choose "yes" for tracking with the arrow keys' radio group, then save.
    css(browser, "#tracking-no").send_keys(Keys.UP)
    assert css(browser, "#tracking-yes").is_selected()
    screenshot(browser, "preferences-branded-es", SHOTS)
    desktop(browser, "preferences-branded-es-desktop", SHOTS)
    submit(browser, browser.find_element("xpath", "//button[normalize-space(.)='Guardar mi elección sobre el seguimiento']"))
    assert "Guardado: podemos ver si abre nuestros correos" in browser.page_source
    assert css(browser, "#tracking-yes").is_selected()


def test_segments_layouts_branding_and_the_engagement_report_with_the_keyboard(app, site, browser):
    from selenium.webdriver.common.keys import Keys

    from preference_center import feedback

    sign_in(browser, site)
    # A segment, typed and saved with the keyboard only; its live count follows the filter.
    browser.get(f"{site}/admin/segments/new")
    settled(browser)
    css(browser, "#name").send_keys("Acme-free customers")
    css(browser, "input[name=relationships][value=customer]").send_keys(Keys.SPACE)
    wait_for(browser, lambda: css(browser, "#audience-count strong").text == "2")
    css(browser, "#companies").send_keys("Umbrella")
    wait_for(browser, lambda: css(browser, "#audience-count strong").text == "1")
    assert fits_the_screen(browser)
    screenshot(browser, "admin-segment", SHOTS)
    css(browser, "#companies").send_keys(Keys.ENTER)  # submits the form
    wait_for(browser, lambda: "/admin/segments" in browser.current_url and "new" not in browser.current_url)
    settled(browser)
    assert "Acme-free customers" in css(browser, "table").text and css(browser, "td.segment-count").text == "1"

    # A layout with its preview.
    browser.get(f"{site}/admin/layouts/new")
    settled(browser)
    css(browser, "#name").send_keys("Monthly frame")
    html = css(browser, "#html")
    html.clear()
    html.send_keys('<div><p>Lácteos Peña · {{ contact.first_name|default("hola") }}</p>{{ content }}</div>')
    submit(browser, browser.find_element("xpath", "//button[@value='preview']"))
    browser.switch_to.frame(css(browser, "iframe.mail-frame"))
    assert "Lácteos Peña · Sample" in browser.find_element("tag name", "body").text
    browser.switch_to.default_content()
    submit(browser, browser.find_element("xpath", "//button[@value='save']"))
    assert "Layout “Monthly frame” saved." in browser.page_source
    desktop(browser, "admin-layout-desktop", SHOTS)

    # The engagement figures of a sent campaign.
    with app.app_context():
        campaign = campaigns.create({"name": "Winter news", "topic": "news", "subject": "Hi", "text": "Hello",
                                     "html": '<p><a href="https://example.com/shop">Shop</a></p>'}, created_by="t")
        campaigns.schedule(campaign, None)
        db.session.commit()
        campaigns.start_due()
        while (batch := sending.plan_chunk(campaign.id, 100)) is not None:
            sending.send_batch(batch)
        sending.finish_campaign_if_done(campaign.id)
        deliveries = db.session.scalars(select(Delivery).where(Delivery.campaign_id == campaign.id)).all()
        events = [{"sg_event_id": f"{kind}-{d.id}", "event": kind, "delivery_id": str(d.id), "timestamp": 1900000000,
                   **({"url": "https://example.com/shop"} if kind == "click" else {})}
                  for d in deliveries for kind in ("delivered", "open", "click")][:7]
        feedback.process(feedback.receive(events).new_ids)
        campaign_id = campaign.id
    browser.get(f"{site}/admin/campaigns/{campaign_id}/report")
    settled(browser)
    assert css(browser, "#e-delivered").text == "3" and css(browser, "#e-opened").text == "2"
    assert "https://example.com/shop" in css(browser, "table.top-links").text
    assert fits_the_screen(browser)
    screenshot(browser, "admin-engagement", SHOTS)
    desktop(browser, "admin-engagement-desktop", SHOTS)
