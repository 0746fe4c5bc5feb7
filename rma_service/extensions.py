"""Extensions, created unbound; ``create_app`` binds them with ``init_app``."""
import time

from flask import request
from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from limits.storage import MemoryStorage
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


class _MemoryStorage(MemoryStorage):
    """limits' ``memory://`` storage, its sweep of expired counters done inline, at most once a
    second, instead of in a new ``threading.Timer`` thread 10 ms after nearly every hit: a
    thread start costs about 70 us of CPU, 1-2 % of a create-return under load. (A counter
    read after its window is reset by ``get`` either way; the sweep only frees memory.)
    ``config.flask_config`` selects it for ``memory://``. It overrides the storage's private
    hook (limits is pinned in requirements.txt); should that name change, the Timer
    simply comes back."""

    STORAGE_SCHEME = ["rma-memory"]
    _next_sweep = 0.0

    def _MemoryStorage__schedule_expiry(self) -> None:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + 1.0
            self._MemoryStorage__expire_events()


limiter = Limiter(key_func=get_remote_address)


def init_limiter(app) -> None:
    """Flask-Limiter for the pages (customer pages, admin sign-in). The JSON API counts its one
    budget per key itself (api/__init__.py ``rate_limit``), so Flask-Limiter's check, which
    runs before every request of the application, is skipped for it: matching a request
    against every registered limit to find none cost 2-3 % of a create-return."""
    limiter.init_app(app)
    hooks = app.before_request_funcs.setdefault(None, [])
    for i, hook in enumerate(hooks):
        if getattr(hook, "__self__", None) is limiter:

            def check(hook=hook):
                return None if request.blueprint == "api" else hook()

            hooks[i] = check
