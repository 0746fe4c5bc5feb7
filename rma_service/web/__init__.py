"""The customers' pages (``/returns/``): start a return, print the label, follow it.

Every page works without JavaScript and in English and French. Each view parses a form, calls
one function of ``services.customer`` and renders; the language comes from ``?lang=`` (kept
in the session), else the order's or the return's, else the browser's.
"""
from __future__ import annotations

from flask import Blueprint, current_app, g, request, session, url_for
from flask_babel import get_locale, refresh

bp = Blueprint("web", __name__, url_prefix="/returns")

LANGUAGES = (("en", "English"), ("fr", "Français"))
# Pages reached by POST: the language switch sends the customer to this page instead.
_GET_FALLBACK = {"web.lookup": "web.start", "web.review": "web.order", "web.submit": "web.order",
                 "web.edit": "web.order", "web.message": "web.status", "web.cancel": "web.status"}


def speak(locale: str | None) -> None:
    """Read this page in the language of the order or return it is about (unless the customer
    chose one with the switch)."""
    if locale:
        g.locale_hint = locale
        refresh()


@bp.before_request
def _language_switch() -> None:
    lang = request.args.get("lang")
    if lang in dict(LANGUAGES):
        session["lang"] = lang
        refresh()


@bp.after_request
def _private(response):
    # The status pages' links carry a token: keep them out of caches, referrers and indexes.
    response.headers.setdefault("Cache-Control", "private, no-store")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Robots-Tag", "noindex")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def _upload_limit() -> None:
    """The return form carries photos: allow a larger body there than the API's limit. Runs
    before CSRF parses the form (first of the app's before-request functions)."""
    if request.endpoint == "web.submit":
        request.max_content_length = int(current_app.config["RMA"]["UPLOAD_MAX_BYTES"])


@bp.record_once
def _install(state) -> None:
    app = state.app
    app.before_request_funcs.setdefault(None, []).insert(0, _upload_limit)

    @app.context_processor
    def _globals():
        return {"current_lang": str(get_locale() or "en"), "languages": LANGUAGES, "lang_url": lang_url}

    from .helpers import register_template_helpers
    register_template_helpers(app)


def lang_url(code: str) -> str:
    """This page in another language (a GET page; for pages reached by POST, the page the
    customer can go back to)."""
    endpoint = request.endpoint if request.url_rule is not None else None
    args = dict(request.view_args or {})
    if endpoint is None or endpoint.startswith("api.") or endpoint == "static":
        return url_for("web.start", lang=code)
    if request.method != "GET" or endpoint in _GET_FALLBACK:
        endpoint = _GET_FALLBACK.get(endpoint, endpoint)
    else:
        args.update({k: v for k, v in request.args.items() if k != "lang"})
    try:
        return url_for(endpoint, **args, lang=code)
    except Exception:  # an endpoint that needs arguments this request does not have
        return url_for("web.start", lang=code)


from . import views  # noqa: E402,F401  (registers the routes)
