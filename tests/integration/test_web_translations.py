"""Every text a customer reads on the pages has its French translation, and the committed
compiled catalogue (.mo) matches the source (.po): `make translations` was run."""
from __future__ import annotations

import re
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


# French typography: a no-break space (U+00A0, or the narrow U+202F) before « : ; ! ? » and
# after «. Not between digits (13:05) or inside an address.
_TIGHT = re.compile(r"(?<![\u00a0\u202f\d])[:;!?»]|«(?![\u00a0\u202f])")
_URL = re.compile(r"(?:https?|mailto):\S+|\?lang=\w+")


def _tight_punctuation(text: str) -> list[str]:
    text = _URL.sub("URL", text)
    return [text[max(0, m.start() - 25):m.end() + 5] for m in _TIGHT.finditer(text)]


def test_french_texts_put_a_no_break_space_before_high_punctuation():
    bad = []
    for message in _catalog():
        if not message.id:
            continue
        strings = [message.string] if isinstance(message.string, str) else list(message.string)
        bad.extend((message.id, snippet) for s in strings for snippet in _tight_punctuation(s))
    assert bad == []


def test_french_mails_put_a_no_break_space_before_high_punctuation():
    bad = []
    for path in sorted((ROOT / "templates" / "email" / "fr").iterdir()):
        text = path.read_text(encoding="utf-8")
        text = re.sub(r"\{\{.*?\}\}", "X", text, flags=re.S)   # values
        text = re.sub(r"\{[%#].*?[%#]\}", "", text, flags=re.S)  # tags, comments
        text = re.sub(r"<[^>]+>", "", text)                      # markup
        text = re.sub(r"&#?\w+;", "E", text)                     # entities (&lt; …)
        bad.extend((path.name, snippet) for snippet in _tight_punctuation(text))
    assert bad == []


def test_french_labels_put_a_no_break_space_before_high_punctuation():
    from rma_service.adapters import pdf
    texts = list(pdf._STRINGS["fr"].values()) + list(pdf._REASONS["fr"].values())
    bad = [(text, snippet) for text in texts for snippet in _tight_punctuation(text)]
    assert bad == []
