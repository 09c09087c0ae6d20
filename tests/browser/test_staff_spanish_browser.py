"""The campaign flow of the staff pages in Spanish, in real headless Chromium at 360 px: the language switch is
reached with the keyboard on the sign-in page, remembered after signing in, and every step reads Spanish."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import select

from preference_center import contacts, staff
from preference_center.extensions import db
from preference_center.models import Campaign

from ..helpers import PASSWORD, factories
from .screenshots import chromium_path, css, fits_the_screen, next_page, screenshot, serve, settled, submit

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(chromium_path() is None,
                       reason="Chromium not found; install it with: apt-get install -y chromium chromium-driver"),
]

# PC_SCREENSHOTS_DIR=docs/screenshots refreshes the docs' pictures; otherwise they go to a temporary folder.
SHOTS = Path(os.environ.get("PC_SCREENSHOTS_DIR") or tempfile.mkdtemp(prefix="pc-staff-es-shots-"))


@pytest.fixture
def site(app):
    with app.app_context():
        staff.create_user("mia@example.com", "marketer", PASSWORD)
        topic = factories.topic("news")
        for email in ("ana@example.com", "ben@example.com"):
            contacts.record_consent(factories.contact(email), action="grant", topic=topic, source="test",
                                    confirmed=True)
        db.session.commit()
    with serve(app) as base:
        yield base


def tab_to(driver, selector: str, limit: int = 15):
    """Press Tab from the top of the page until `selector` has the focus; the focused element."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    target = css(driver, selector)
    for _ in range(limit):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        if driver.switch_to.active_element == target:
            return target
    raise AssertionError(f"{selector} is not reachable with the keyboard")


def button(driver, label: str):
    return driver.find_element("xpath", f"//button[normalize-space(.)='{label}']")


def test_a_marketer_switches_to_spanish_and_schedules_a_campaign_at_phone_width(app, site, browser):
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{site}/admin/login")
    settled(browser)
    assert browser.find_element("tag name", "html").get_attribute("lang") == "en"
    switch = tab_to(browser, "nav.lang a[lang=es]")
    html = browser.find_element("tag name", "html")
    switch.send_keys(Keys.ENTER)
    next_page(browser, html)
    assert browser.find_element("tag name", "html").get_attribute("lang") == "es"
    assert "Acceso del personal" in browser.page_source and fits_the_screen(browser)

    css(browser, "#email").send_keys("mia@example.com")
    css(browser, "#password").send_keys(PASSWORD)
    submit(browser, button(browser, "Iniciar sesión"))
    assert "Escribir una campaña" in browser.page_source and fits_the_screen(browser)

    browser.get(f"{site}/admin/campaigns/new")
    assert "Nueva campaña" in browser.page_source and fits_the_screen(browser)
    css(browser, "#name").send_keys("Noticias de diciembre")
    css(browser, "#subject").send_keys("Hola {{ contact.name }}")
    css(browser, "#text").send_keys("Hola {{ contact.name }}, novedades de invierno.")
    submit(browser, button(browser, "Guardar borrador"))
    assert "Borrador guardado." in browser.page_source and fits_the_screen(browser)

    submit(browser, button(browser, "Continuar a la confirmación"))
    assert "2 destinatarios, ahora" in browser.page_source and fits_the_screen(browser)
    screenshot(browser, "admin-confirm-sending-es", SHOTS)
    submit(browser, button(browser, "Sí, enviar ahora a 2 destinatarios"))
    assert "Programada para ahora" in browser.page_source and "a 2 destinatarios." in browser.page_source
    assert "recipients" not in browser.find_element("tag name", "main").text
    assert fits_the_screen(browser)
    with app.app_context():
        assert db.session.scalar(select(Campaign.status)) == "scheduled"
