"""The customers' pages (``/returns/``)."""
from flask import Blueprint, render_template

bp = Blueprint("web", __name__, url_prefix="/returns")


@bp.get("/")
def start():
    return render_template("web/start.html")
