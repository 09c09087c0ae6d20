"""The contacts flow of the staff pages in Spanish, in real headless Chromium at 1280 px and by keyboard alone: find
a contact without its accent, add one with custom attributes, and block an address through the confirmation step."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import select

from preference_center import staff
from preference_center.extensions import db
from preference_center.models import Contact, Suppression

from ..helpers import PASSWORD, factories
from .screenshots import chromium_path, css, desktop, fits_the_screen, next_page, serve, settled

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
        staff.create_user("ada@example.com", "admin", PASSWORD)
        factories.contact("ana@example.com", name="Ana García")
        factories.contact("ben@example.com", name="Ben Stone")
        db.session.commit()
    with serve(app) as base:
        yield base


def desktop_width(driver) -> None:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False})


def press(driver, *keys) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(*keys).perform()
    settled(driver)


def send_form(driver, *keys) -> None:
    """Keys that send a form (Enter on a field or a button): wait for the next page, not just any loaded one."""
    from selenium.webdriver.common.action_chains import ActionChains

    html = driver.find_element("tag name", "html")
    ActionChains(driver).send_keys(*keys).perform()
    next_page(driver, html)


def focus_by_tab(driver, element, limit: int = 60) -> None:
    """Tab from where the focus is until `element` has it (keyboard only: no clicks)."""
    from selenium.webdriver.common.keys import Keys

    for _ in range(limit):
        if driver.switch_to.active_element == element:
            return
        press(driver, Keys.TAB)
    raise AssertionError(f"{element.get_attribute('outerHTML')[:80]} is not reachable with the keyboard")


def main_text(driver) -> str:
    return driver.find_element("tag name", "main").text


def test_an_admin_works_with_contacts_in_spanish_at_desktop_width_by_keyboard(app, site, browser):
    from selenium.webdriver.common.keys import Keys

    desktop_width(browser)
    browser.get(f"{site}/admin/login?lang=es")
    settled(browser)
    css(browser, "#email").send_keys("ada@example.com")
    css(browser, "#password").send_keys(PASSWORD)
    send_form(browser, Keys.ENTER)
    assert browser.find_element("tag name", "html").get_attribute("lang") == "es"

    # Find Ana without typing the accent; the total reads Spanish.
    browser.get(f"{site}/admin/contacts")
    settled(browser)
    assert "2 contactos coinciden." in css(browser, ".list-total").text and fits_the_screen(browser)
    css(browser, "#q").send_keys("garcia")
    send_form(browser, Keys.ENTER)
    assert "1 contacto coincide con «garcia»." in css(browser, ".list-total").text
    rows = browser.find_elements("css selector", "tbody tr")
    assert len(rows) == 1 and "ana@example.com" in rows[0].text

    # Add a contact with custom attributes: fields filled and the form sent from the keyboard.
    browser.get(f"{site}/admin/contacts/new")
    settled(browser)
    assert "Atributos personalizados" in main_text(browser) and fits_the_screen(browser)
    css(browser, "#email").send_keys("cy@example.com")
    css(browser, "#name").send_keys("Cy Núñez")
    css(browser, "#attributes").send_keys("plan = gold", Keys.ENTER, "seats = 12")
    add = browser.find_element("xpath", "//main//button[normalize-space(.)='Añadir el contacto']")
    focus_by_tab(browser, add)
    send_form(browser, Keys.ENTER)
    assert "Contacto cy@example.com añadido." in browser.page_source and fits_the_screen(browser)
    assert "plan" in main_text(browser) and "gold" in main_text(browser)
    desktop(browser, "admin-contact-es-desktop", SHOTS)
    desktop_width(browser)
    with app.app_context():
        assert db.session.scalar(select(Contact.attributes).where(Contact.email == "cy@example.com")) == {
            "plan": "gold", "seats": 12}

    # Block Ben's address from the list: asked first, in Spanish, and nothing happens before the answer.
    browser.get(f"{site}/admin/contacts?q=ben")
    settled(browser)
    pick = css(browser, "tbody input[name=id]")
    focus_by_tab(browser, pick)
    press(browser, Keys.SPACE)
    assert pick.is_selected()
    css(browser, "#reason").send_keys("pidió por teléfono")
    go_on = browser.find_element("xpath", "//main//button[normalize-space(.)='Continuar…']")
    focus_by_tab(browser, go_on)
    send_form(browser, Keys.ENTER)
    assert "¿Dejar de enviar correo de marketing a 1 contacto?" in main_text(browser) and fits_the_screen(browser)
    desktop(browser, "admin-bulk-confirm-es-desktop", SHOTS)
    desktop_width(browser)
    with app.app_context():
        assert db.session.scalar(select(Suppression.id)) is None
    focus_by_tab(browser, browser.find_element("xpath", "//main//button[normalize-space(.)='Sí, hacerlo']"))
    send_form(browser, Keys.ENTER)
    assert "Hecho para 1 contacto." in main_text(browser)
    assert "Done for" not in main_text(browser)
    with app.app_context():
        assert db.session.scalar(select(Suppression.scope)) == "marketing"
