"""Pure business rules: no Flask, SQLAlchemy, requests, WeasyPrint or APScheduler here."""


class DomainError(Exception):
    """A rule said no. ``code`` is the contract's error code."""

    code = "conflict"

    def __init__(self, detail: str, **extra):
        super().__init__(detail)
        self.detail = detail
        self.extra = extra
