"""The customer pages in a real browser (Playwright driving Debian's chromium) against the
live server: the whole flow to the downloaded label, without JavaScript; a partial return; an
ineligible line; French; a wrong email; cancelling; a phone screen; keyboard only;
contrast; no third-party requests. Screenshots for the README go to docs/screenshots/."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import expect
from sqlalchemy import select

from rma_service.extensions import db
from rma_service.models import Photo, Return, ReturnItem
from tests.conftest import NOW, order_body

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
RMA = re.compile(r"RMA-[0-9A-Z]{4}-[0-9A-Z]{4}")


@pytest.fixture
def browse(browser, live_server):
    """Open a page in a new browser context (``javascript``, ``locale``, ``width``...)."""
    contexts = []

    def open_page(javascript: bool = True, locale: str = "en-GB", width: int = 1100, height: int = 900):
        context = browser.new_context(base_url=live_server.url, locale=locale, java_script_enabled=javascript,
                                      viewport={"width": width, "height": height}, accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.requests = requests
        page.base = live_server.url
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def fixed_numbers(monkeypatch):
    """RMA numbers drawn in a fixed order, so that the screenshots do not change between runs."""
    from rma_service.domain import rma_number
    bodies = iter(["7K3M9Q2", "4TR8WX1", "9HC2PZ6", "2MV7QE3", "5YB1KD8", "3NG6TA4"])
    monkeypatch.setattr(rma_number, "generate", lambda: (lambda b: b + rma_number.check_symbol(b))(next(bodies)))


def _find_order(page, number="1001", email="ada@example.com", order_label="Order number", email_label="Email address",
                button="Find my order"):
    page.goto("/returns/")
    page.get_by_label(order_label).fill(number)
    page.get_by_label(email_label).fill(email)
    page.get_by_role("button", name=button).click()


def _line(page, name):
    return page.locator("li.line", has_text=name)


def _choose(page, name, reason, quantity=None, comment=None):
    line = _line(page, name)
    line.get_by_role("checkbox").check()
    if quantity is not None:
        line.locator("select[name$='-quantity']").select_option(str(quantity))
    line.locator("select[name$='-reason']").select_option(reason)
    if comment is not None:
        line.locator("textarea").fill(comment)


def _issue_labels(app) -> int:
    """The label job, as the scheduler runs it."""
    from rma_service.services.labels import issue_due
    with app.app_context():
        return issue_due(NOW)


def _jpeg() -> bytes:
    out = io.BytesIO()
    image = Image.new("RGB", (800, 600), (30, 90, 160))
    exif = image.getexif()
    exif[0x010F] = "PhoneMaker"
    image.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def _only_local_requests(page):
    foreign = [url for url in page.requests if not url.startswith(page.base) and not url.startswith("data:")]
    assert foreign == [], foreign


# --- the whole flow, without JavaScript ----------------------------------------------------------

def test_whole_flow_to_the_downloaded_label_without_javascript(app, order, browse, tmp_path):
    page = browse(javascript=False)
    _find_order(page)
    expect(page.get_by_role("heading", name="What would you like to return?")).to_be_visible()
    _choose(page, "Linen shirt", "damaged", quantity=1, comment="Seam open on the left side")
    page.get_by_role("button", name="Continue to the summary").click()

    expect(page.get_by_role("heading", name="Check and send your return")).to_be_visible()
    summary = page.locator("section.summary")
    expect(summary).to_contain_text("Amount refunded to you")
    expect(summary).to_contain_text("€49.90")
    expect(summary).to_contain_text("Refund by December 9, 2026 at the latest.")
    page.get_by_label("Photos (optional)").set_input_files(
        [{"name": "seam.jpg", "mimeType": "image/jpeg", "buffer": _jpeg()}])
    page.get_by_role("button", name="Send my return").click()

    expect(page.get_by_text("Return registered")).to_be_visible()
    number = RMA.search(page.locator("h1").inner_text()).group(0)
    expect(page.get_by_text("Your label is being prepared")).to_be_visible()

    issued = _issue_labels(app)
    assert issued == 1, "services.labels.issue_due issued no label"
    page.reload()
    expect(page.locator("figure.qr svg")).to_be_visible()
    expect(page.locator("figure.qr figcaption")).to_have_text(number)
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the label (PDF)").click()
    saved = tmp_path / "label.pdf"
    download.value.save_as(saved)
    pdf = saved.read_bytes()
    assert pdf.startswith(b"%PDF-")
    from pypdf import PdfReader
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
    assert number in text

    with app.app_context():
        ret = db.session.scalar(select(Return))
        assert ret.status == "authorized" and [i.line_id for i in ret.items] == ["L1"]
        assert ret.items[0].comment == "Seam open on the left side"
        photo = db.session.scalar(select(Photo))
        assert photo.content_type == "image/jpeg" and b"PhoneMaker" not in photo.data
    _only_local_requests(page)


def test_partial_return_of_one_of_two_lines(app, order, browse):
    page = browse()
    _find_order(page)
    _choose(page, "Wool socks", "too_large", quantity=2)
    page.get_by_role("button", name="Continue to the summary").click()
    expect(page.locator("section.summary")).to_contain_text("Value of the 2 items returned")
    expect(page.locator("section.summary")).to_contain_text("€19.00")
    expect(page.locator(".review-item")).to_have_count(1)
    page.get_by_role("button", name="Send my return").click()
    expect(page.get_by_text("Return registered")).to_be_visible()
    with app.app_context():
        items = db.session.scalars(select(ReturnItem)).all()
        assert [(i.line_id, i.quantity) for i in items] == [("L2", 2)]
    # the shirt can still be returned, the socks show what is already in a return
    page.goto("/returns/order")
    expect(_line(page, "Linen shirt").get_by_role("checkbox")).to_be_enabled()
    expect(_line(page, "Wool socks")).to_contain_text("2 already in a return")
    expect(_line(page, "Wool socks").locator("select[name$='-quantity'] option")).to_have_count(3)
    expect(page.get_by_text("Returns already requested for this order")).to_be_visible()


def test_ineligible_line_is_shown_disabled_with_its_reason(app, order, browse):
    page = browse()
    _find_order(page)
    gift = page.get_by_role("checkbox", name="Gift card")
    expect(gift).to_be_disabled()
    expect(gift).to_have_accessible_description(re.compile("Gift cards cannot be returned."))
    expect(_line(page, "Gift card")).to_contain_text("Gift cards cannot be returned.")
    expect(page.get_by_role("checkbox", name="Linen shirt")).to_be_enabled()


def test_french_page_from_the_browser_and_the_order(app, api, frozen_now, browse, fixed_numbers):
    api.put("/orders/3001", json=order_body(customer={"email": "marie@example.fr", "name": "Marie Curie",
                                                      "locale": "fr"}))
    page = browse(locale="fr-FR")
    page.goto("/returns/")
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    expect(page.get_by_role("heading", name="Retourner un article")).to_be_visible()
    _find_order(page, "3001", "marie@example.fr", "Numéro de commande", "Adresse e-mail", "Trouver ma commande")
    expect(page.get_by_role("heading", name="Que souhaitez-vous retourner ?")).to_be_visible()
    expect(_line(page, "Linen shirt")).to_contain_text("49,90\u00a0€")
    expect(_line(page, "Gift card")).to_contain_text("Les cartes cadeaux ne peuvent pas être retournées.")
    expect(page.get_by_text("Vous pouvez demander un retour jusqu’au 22 décembre 2026.")).to_be_visible()
    _choose(page, "Linen shirt", "too_small")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "items-fr.png"), full_page=True)
    page.get_by_role("button", name="Voir le récapitulatif").click()
    expect(page.locator("section.summary")).to_contain_text("Frais de retour, déduits")
    expect(page.locator("section.summary")).to_contain_text("44,00\u00a0€")
    page.get_by_role("button", name="Envoyer ma demande de retour").click()
    expect(page.get_by_text("Retour enregistré")).to_be_visible()
    expect(page.get_by_role("heading", name="La suite")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "confirmation-fr.png"), full_page=True)
    # the switch: English on demand, kept for the next pages
    page.get_by_role("link", name="English").click()
    expect(page.get_by_role("heading", name="What happens next")).to_be_visible()
    page.get_by_role("link", name="Follow your return").click()
    expect(page.get_by_role("heading", name="What happened so far")).to_be_visible()


def test_wrong_email_is_refused_without_telling_whether_the_order_exists(app, order, browse):
    page = browse()
    _find_order(page, email="someone@example.com")
    alert = page.locator("#lookup-error")
    expect(alert).to_have_attribute("role", "alert")
    expect(alert).to_have_text(re.compile("We could not find an order with this number and email address"))
    email = page.get_by_label("Email address")
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(email).to_have_accessible_description(re.compile("We could not find an order"))
    expect(email).to_have_value("someone@example.com")
    unknown = browse()
    _find_order(unknown, number="4242")
    expect(unknown.locator("#lookup-error")).to_have_text(alert.inner_text())


def test_cancelling_from_the_status_page(app, order, browse):
    page = browse()
    _find_order(page)
    _choose(page, "Linen shirt", "changed_mind")
    page.get_by_role("button", name="Continue to the summary").click()
    page.get_by_role("button", name="Send my return").click()
    page.get_by_role("link", name="Follow your return").click()
    expect(page.locator(".status-badge")).to_contain_text("Accepted: waiting for your parcel")
    page.get_by_role("link", name="Cancel this return").click()
    page.get_by_role("link", name="No, keep it").click()
    expect(page.get_by_role("link", name="Cancel this return")).to_be_visible()
    page.get_by_role("link", name="Cancel this return").click()
    page.get_by_role("button", name="Yes, cancel the return").click()
    expect(page.get_by_role("status")).to_contain_text("is cancelled")
    expect(page.locator(".status-badge")).to_contain_text("Cancelled")
    expect(page.locator(".timeline")).to_contain_text("You cancelled the return")
    expect(page.get_by_role("link", name="Cancel this return")).to_have_count(0)
    with app.app_context():
        ret = db.session.scalar(select(Return))
        assert ret.status == "cancelled"
        assert ret.labels[-1].status == "voided"


# --- a phone screen, the keyboard, contrast ----------------------------------------------------

_OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const bad = [];
  for (const el of document.querySelectorAll('a, button, input, select, textarea, label, summary')) {
    const style = getComputedStyle(el);
    if (el.type === 'hidden' || style.display === 'none' || style.visibility === 'hidden') continue;
    if (el.closest('.visually-hidden') || el.classList.contains('skip-link')) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (r.left < 0 || r.right > width + 0.5) bad.push(`${el.tagName}#${el.id || ''} "${(el.innerText || el.name || '').slice(0, 30)}" ${r.left}-${r.right}`);
  }
  return {width, scroll: document.documentElement.scrollWidth, bad};
}"""


def _fits(page, name):
    result = page.evaluate(_OVERFLOW)
    assert result["scroll"] <= result["width"], (name, result)
    assert result["bad"] == [], (name, result)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"phone-360-{name}.png"), full_page=True)


def test_every_control_fits_a_360_px_screen(app, order, browse, fixed_numbers):
    page = browse(width=360, height=780)
    page.goto("/returns/")
    _fits(page, "start")
    _find_order(page)
    expect(page.get_by_role("heading", name="What would you like to return?")).to_be_visible()
    _choose(page, "Linen shirt", "other", comment="")
    _choose(page, "Wool socks", "too_small", quantity=3)
    page.get_by_role("button", name="Continue to the summary").click()  # "other" without comment
    expect(page.locator(".error-summary")).to_be_visible()
    _fits(page, "items")
    _line(page, "Linen shirt").locator("textarea").fill("Colour differs from the photo")
    page.get_by_role("button", name="Continue to the summary").click()
    expect(page.get_by_role("heading", name="Check and send your return")).to_be_visible()
    _fits(page, "summary")
    page.get_by_role("button", name="Send my return").click()
    expect(page.get_by_text("Return registered")).to_be_visible()
    _fits(page, "confirmation")
    page.get_by_role("link", name="Follow your return").click()
    expect(page.get_by_role("heading", name="What happened so far")).to_be_visible()
    _fits(page, "status")


def test_keyboard_only(app, order, browse):
    page = browse()
    page.goto("/returns/")
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    page.keyboard.press("Enter")
    for _ in range(3):  # to the first field of the form, whatever sits before it
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "order_number":
            break
    expect(page.get_by_label("Order number")).to_be_focused()
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # the focus is visible
    page.keyboard.type("1001")
    page.keyboard.press("Tab")
    page.keyboard.type("ada@example.com")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="What would you like to return?")).to_be_visible()
    # tab to the shirt's box, tick it with the space bar, pick a reason with the arrows
    shirt = page.get_by_role("checkbox", name="Linen shirt")
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "lines-0-selected":
            break
    expect(shirt).to_be_focused()
    page.keyboard.press("Space")
    expect(shirt).to_be_checked()
    page.keyboard.press("Tab")  # quantity
    page.keyboard.press("Tab")  # reason
    expect(page.locator("#lines-0-reason")).to_be_focused()
    for _ in range(5):
        page.keyboard.press("ArrowDown")
    assert page.locator("#lines-0-reason").input_value() == "too_small"
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "Continue to the summary":
            break
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Check and send your return")).to_be_visible()
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "Send my return":
            break
    page.keyboard.press("Enter")
    expect(page.get_by_text("Return registered")).to_be_visible()


_LABELS = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter(el => el.type !== 'hidden')
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
  .map(el => el.name || el.id)"""

_CONTRAST = """() => {
  const parse = c => { const p = c.match(/[\\d.]+/g).map(Number); return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
  const lum = ({r, g, b}) => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
                               return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const background = el => { for (; el; el = el.parentElement) { const c = parse(getComputedStyle(el).backgroundColor); if (c.a > 0.5) return c; }
                             return {r: 255, g: 255, b: 255, a: 1}; };
  const low = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode, el = node.parentElement;
    if (!node.textContent.trim() || el.closest('.visually-hidden, .skip-link, svg')) continue;
    const style = getComputedStyle(el), rect = el.getBoundingClientRect();
    if (style.visibility === 'hidden' || rect.width < 2 || rect.height < 2) continue;
    const fg = lum(parse(style.color)), bg = lum(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    const size = parseFloat(style.fontSize), bold = parseInt(style.fontWeight) >= 700;
    const needed = (size >= 24 || (bold && size >= 18.66)) ? 3 : 4.5;
    if (ratio < needed) low.push(`${node.textContent.trim().slice(0, 40)}: ${ratio.toFixed(2)}`);
  }
  return low;
}"""


def test_labels_and_contrast_on_every_page(app, order, browse):
    page = browse()

    def check(name, ready):
        expect(ready).to_be_visible()  # the new page is there before it is measured
        assert page.evaluate(_LABELS) == [], name
        assert page.evaluate(_CONTRAST) == [], name

    page.goto("/returns/")
    check("start", page.get_by_role("heading", name="Return an item"))
    _find_order(page, email="wrong@example.com")
    check("start with error", page.locator("#lookup-error"))
    _find_order(page)
    check("items", page.get_by_role("heading", name="What would you like to return?"))
    _choose(page, "Linen shirt", "other")
    page.get_by_role("button", name="Continue to the summary").click()
    check("items with errors", page.locator(".error-summary"))
    _line(page, "Linen shirt").locator("textarea").fill("Too shiny")
    page.get_by_role("button", name="Continue to the summary").click()
    check("summary", page.get_by_role("heading", name="Check and send your return"))
    page.get_by_role("button", name="Send my return").click()
    check("confirmation", page.get_by_text("Return registered"))
    page.get_by_role("link", name="Follow your return").click()
    check("status", page.get_by_role("heading", name="What happened so far"))
    page.get_by_role("link", name="Cancel this return").click()
    check("cancel", page.get_by_role("button", name="Yes, cancel the return"))
    page.goto("/returns/status/not-a-token")
    check("404", page.get_by_role("heading", name="We cannot find this page"))
    _only_local_requests(page)


# --- screenshots for the README --------------------------------------------------------------

def test_screenshots_of_the_start_and_confirmation_pages(app, order, browse, fixed_numbers):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browse(width=1100, height=760)
    page.goto("/returns/")
    page.screenshot(path=str(SCREENSHOTS / "start.png"), full_page=True)
    _find_order(page)
    _choose(page, "Linen shirt", "too_small")
    _choose(page, "Wool socks", "changed_mind", quantity=2)
    page.locator("body").click(position={"x": 5, "y": 5})  # no focus ring in the picture
    page.screenshot(path=str(SCREENSHOTS / "items.png"), full_page=True)
    page.get_by_role("button", name="Continue to the summary").click()
    expect(page.get_by_role("heading", name="Check and send your return")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "summary.png"), full_page=True)
    page.get_by_role("button", name="Send my return").click()
    expect(page.get_by_text("Return registered")).to_be_visible()
    assert _issue_labels(app) == 1
    page.reload()
    expect(page.locator("figure.qr svg")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "confirmation.png"), full_page=True)
    page.get_by_role("link", name="Follow your return").click()
    expect(page.get_by_role("heading", name="What happened so far")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "status.png"), full_page=True)



# --- a long comment on a phone, Back after sending, the language switch on the summary ----------

@pytest.fixture
def phone(browser, live_server):
    """A 390 × 844 phone (device pixels, touch, the mobile viewport that zooms out to fit a
    page wider than the screen)."""
    context = browser.new_context(base_url=live_server.url, locale="fr-FR", viewport={"width": 390, "height": 844},
                                  device_scale_factor=2, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


_WIDTH = "() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"


def test_a_long_unbroken_comment_fits_a_390_px_phone(app, order, phone):
    word = "https://photos.example.com/album/" + "x7Kq2" * 40  # 233 characters without a break
    phone.goto("/returns/?lang=fr")
    _find_order(phone, order_label="Numéro de commande", email_label="Adresse e-mail", button="Trouver ma commande")
    _choose(phone, "Linen shirt", "damaged", comment=f"Voir {word}")
    phone.get_by_role("button", name="Voir le récapitulatif").click()
    expect(phone.get_by_role("heading", name="Vérifiez et envoyez votre retour")).to_be_visible()
    expect(phone.locator(".review-comment")).to_contain_text(word)
    assert phone.evaluate(_WIDTH) <= 390
    phone.get_by_role("button", name="Envoyer ma demande de retour").click()
    expect(phone.get_by_text("Retour enregistré")).to_be_visible()
    with app.app_context():
        ret = db.session.scalar(select(Return))
        assert ret.items[0].comment == f"Voir {word}"
    phone.get_by_role("link", name="Suivre votre retour").click()
    expect(phone.locator(".item-comment")).to_contain_text(word)
    assert phone.evaluate(_WIDTH) <= 390


def test_back_after_sending_shows_a_page_not_a_resubmission(app, order, browse):
    page = browse()
    _find_order(page)
    _choose(page, "Linen shirt", "too_small")
    page.get_by_role("button", name="Continue to the summary").click()
    expect(page.get_by_role("heading", name="Check and send your return")).to_be_visible()
    page.get_by_role("button", name="Send my return").click()
    expect(page.get_by_text("Return registered")).to_be_visible()
    number = RMA.search(page.locator("h1").inner_text()).group(0)
    page.go_back()
    expect(page.get_by_role("heading", name="What would you like to return?")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text(f"Your return {number} has been sent.")
    expect(page.get_by_text("Returns already requested for this order")).to_be_visible()
    content = page.content()
    assert "ERR_CACHE_MISS" not in content and "Resubmission" not in content
    with app.app_context():
        assert len(db.session.scalars(select(Return)).all()) == 1


def test_back_from_the_summary_shows_the_items_as_chosen(app, order, browse):
    page = browse(javascript=False)
    _find_order(page)
    _choose(page, "Wool socks", "too_large", quantity=2, comment="Thick")
    page.get_by_role("button", name="Continue to the summary").click()
    expect(page.get_by_role("heading", name="Check and send your return")).to_be_visible()
    page.go_back()
    expect(page.get_by_role("heading", name="What would you like to return?")).to_be_visible()
    expect(page.get_by_role("checkbox", name="Wool socks")).to_be_checked()
    expect(_line(page, "Wool socks").locator("textarea")).to_have_value("Thick")
    page.go_forward()
    expect(page.get_by_role("heading", name="Check and send your return")).to_be_visible()
    expect(page.locator(".review-item")).to_contain_text("Wool socks")


def test_switching_to_french_on_the_summary_keeps_the_items(app, order, browse):
    page = browse()
    _find_order(page)
    _choose(page, "Wool socks", "too_large", quantity=2)
    page.get_by_role("button", name="Continue to the summary").click()
    expect(page.get_by_role("heading", name="Check and send your return")).to_be_visible()
    page.get_by_role("link", name="Français").click()
    expect(page.get_by_role("heading", name="Vérifiez et envoyez votre retour")).to_be_visible()
    expect(page.locator(".review-item")).to_have_count(1)
    expect(page.locator(".review-item")).to_contain_text("Wool socks")
    expect(page.locator("section.summary")).to_contain_text("19,00\u00a0€")
    page.get_by_role("button", name="Envoyer ma demande de retour").click()
    expect(page.get_by_text("Retour enregistré")).to_be_visible()
    with app.app_context():
        ret = db.session.scalar(select(Return))
        assert [(i.line_id, i.quantity) for i in ret.items] == [("L2", 2)] and ret.locale == "fr"
