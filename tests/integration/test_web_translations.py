"""Every text a customer reads on the pages has its French translation, and the committed
compiled catalogue (.mo) matches the source (.po): `make translations` was run."""
from __future__ import annotations

from pathlib import Path

from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
TRANSLATIONS = ROOT / "rma_service" / "translations"
CUSTOMER_SOURCES = [("rma_service/web/**.py", "python"), ("rma_service/services/customer.py", "python"),
                    ("templates/web/**.html", "jinja2"), ("templates/errors/**.html", "jinja2"),
                    ("templates/base.html", "jinja2")]
KEYWORDS = {**DEFAULT_KEYWORDS, "lazy_gettext": None, "_l": None}


def _catalog():
    with open(TRANSLATIONS / "fr" / "LC_MESSAGES" / "messages.po", "rb") as f:
        return read_po(f, locale="fr")


def test_every_customer_text_is_translated_to_french():
    catalog = _catalog()
    missing = []
    for _file, _line, message, _comments, _context in extract_from_dir(
            str(ROOT), CUSTOMER_SOURCES, {}, KEYWORDS, comment_tags=()):
        msgid = message if isinstance(message, str) else message[0]
        entry = catalog.get(msgid)
        strings = [] if entry is None else ([entry.string] if isinstance(entry.string, str) else list(entry.string))
        if entry is None or entry.fuzzy or not all(strings):
            missing.append(msgid)
    assert missing == [], "run `make translations` and translate: " + repr(missing)


def test_translations_keep_their_placeholders():
    problems = [(m.id, errors) for m, errors in _catalog().check() if errors]
    assert problems == []


def test_compiled_catalogue_matches_the_source():
    def key(value):
        return value if isinstance(value, str) else tuple(value)
    with open(TRANSLATIONS / "fr" / "LC_MESSAGES" / "messages.mo", "rb") as f:
        compiled = {key(m.id): key(m.string) for m in read_mo(f) if m.id}
    source = {key(m.id): key(m.string) for m in _catalog() if m.id and not m.fuzzy}
    assert compiled == source, "run `make translations` (pybabel compile)"
