"""Extensions, created unbound; ``create_app`` binds them with ``init_app``."""
from flask import request
from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData

# One naming convention from the first migration on, so that constraints can be altered by name.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# expire_on_commit=False: a view serialises what the service just committed without reading
# every row back (services own the transaction and load what they change).
db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING_CONVENTION),
                session_options={"expire_on_commit": False})
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
babel = Babel()


def _limited_request() -> str:
    """The request as Flask-Limiter knows it: its endpoint, or nothing for the JSON API, which
    counts its one budget per key itself (api/__init__.py ``rate_limit``): Flask-Limiter then
    leaves the API's requests at its first check."""
    return "" if request.blueprint == "api" else (request.endpoint or "")


limiter = Limiter(key_func=get_remote_address, request_identifier=_limited_request)
