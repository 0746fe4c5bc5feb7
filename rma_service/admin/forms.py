"""Flask-WTF forms of the admin view: every POST carries and checks a CSRF token."""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Optional as Maybe

from flask_wtf import FlaskForm
from wtforms import (BooleanField, Field, HiddenField, IntegerField, PasswordField, RadioField, SelectField,
                     StringField, TextAreaField)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import AnyOf, DataRequired, Length, Optional, Regexp, StopValidation
from wtforms.widgets import TextInput

from ..domain.policy import CONDITIONS, DISPOSITIONS
from ..services.agents import ROLES
from ..services.customer import MESSAGE_MAX

CONDITION_CHOICES = [SelectChoice(c, c.replace("_", " ")) for c in CONDITIONS]
DISPOSITION_CHOICES = [SelectChoice(d, d.capitalize()) for d in DISPOSITIONS]
ROLE_CHOICES = [SelectChoice(r, r) for r in ROLES]
EMAIL = Regexp(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", message="Enter an email address.")


# --- money and quantities, as agents type them -----------------------------------------------------

MONEY_FORMAT = "Enter an amount like 13.60, with at most two decimals."
MONEY_EMPTY = "Enter an amount, like 13.60."
MONEY_POSITIVE = "Enter an amount greater than zero."
MONEY_TOO_LARGE = "Enter an amount under 10 million."
MONEY_LIMIT = Decimal("10000000")
_MONEY_RE = re.compile(r"([+-]?)([0-9]+)(?:[.,]([0-9]+))?")


def parse_money(text: Maybe[str]) -> tuple[Maybe[Decimal], Maybe[str]]:
    """``(amount, None)`` or ``(None, message)``. Takes "13.60", "13,60" (French decimal
    comma) and "13"; refuses more than two decimals (never rounds), zero or less, thousands
    separators, exponents, NaN, non-ASCII digits and absurd sizes, with one message each."""
    text = (text or "").strip()
    if not text:
        return None, MONEY_EMPTY
    match = _MONEY_RE.fullmatch(text)
    if match is None:
        return None, MONEY_FORMAT
    sign, whole, decimals = match.groups()
    if decimals is not None and len(decimals) > 2:
        return None, MONEY_FORMAT
    if len(whole.lstrip("0")) > len(str(MONEY_LIMIT)):  # before building a huge Decimal
        return None, MONEY_TOO_LARGE
    amount = Decimal(f"{whole}.{(decimals or '').ljust(2, '0')}")
    if sign == "-" or amount <= 0:
        return None, MONEY_POSITIVE
    if amount >= MONEY_LIMIT:
        return None, MONEY_TOO_LARGE
    return amount, None


class MoneyField(Field):
    """An amount of money (``Decimal`` with two places, never rounded): the refund form and the
    dispute's resolve form. Any problem is one message (see ``parse_money``). ``required=False``:
    an empty box is no amount (``None``) and no error."""

    widget = TextInput()

    def __init__(self, label=None, validators=None, required: bool = True, **kwargs):
        super().__init__(label, validators, **kwargs)
        self.required = required
        self.problem: Maybe[str] = None

    def _value(self) -> str:
        if self.raw_data:
            return self.raw_data[0]
        return "" if self.data is None else str(self.data)

    def process_formdata(self, valuelist) -> None:
        self.data, self.problem = parse_money(valuelist[0] if valuelist else "")

    def ignore(self) -> None:
        """The amount does not apply (e.g. a dispute rejected): no value, no error."""
        self.data, self.problem = None, None

    def pre_validate(self, form) -> None:
        if self.problem == MONEY_EMPTY and not self.required:
            self.problem = None
            raise StopValidation()
        if self.problem:
            raise StopValidation(self.problem)


class QuantityField(IntegerField):
    """Units, 0 … ``maximum``; anything else is one message (not "Not a valid integer value."
    and "Number must be between …" together). Absent from the form: its default."""

    def __init__(self, label=None, maximum: int = 0, **kwargs):
        super().__init__(label, **kwargs)
        self.maximum = maximum

    def process_formdata(self, valuelist) -> None:
        if not valuelist:
            return
        text = (valuelist[0] or "").strip()
        self.data = int(text) if re.fullmatch(r"[0-9]{1,9}", text) else None

    def pre_validate(self, form) -> None:
        if self.data is None or not 0 <= self.data <= self.maximum:
            raise StopValidation(f"Enter a whole number of units from 0 to {self.maximum}.")


def _crlf(value):
    """Browsers send line breaks as CRLF but count them as one character: so do we."""
    return value.replace("\r\n", "\n") if isinstance(value, str) else value


class LoginForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])
    next = HiddenField()


class ActionForm(FlaskForm):
    """A button: only the CSRF token travels (approve, sign out …)."""
    source = HiddenField()  # "station" when posted from the receiving station


class CancelForm(FlaskForm):
    """Cancelling cannot be undone (the label is voided, the units go back to the order): the
    agent ticks "I understand" first."""
    confirm = BooleanField("Confirmation", validators=[DataRequired(
        message="Tick “I understand” to cancel the return: cancelling cannot be undone.")])


class RejectForm(FlaskForm):
    reason = TextAreaField("Reason (the customer reads it)", validators=[DataRequired(), Length(max=2000)])


class TriageForm(FlaskForm):
    disposition = RadioField("Disposition", choices=DISPOSITION_CHOICES, validators=[DataRequired()])
    condition = SelectField("Condition", choices=CONDITION_CHOICES, validators=[DataRequired()])
    note = StringField("Note", validators=[Optional(), Length(max=2000)])
    source = HiddenField()


class RefundForm(FlaskForm):
    amount = MoneyField("Amount")
    reference = StringField("Shop's reference", validators=[Optional(), Length(max=200)])


class CloseForm(FlaskForm):
    note = StringField("Note", validators=[Optional(), Length(max=2000)])


class NoteForm(FlaskForm):
    body = TextAreaField("Note for other agents", validators=[DataRequired(), Length(max=5000)])


class RefurbishForm(FlaskForm):
    outcome = StringField(validators=[AnyOf(["refurbished", "recycled"])])
    note = StringField("Note", validators=[Optional(), Length(max=2000)])


class InviteForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=254), EMAIL])
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    role = SelectField("Role", choices=ROLE_CHOICES, default="agent")
    handles_disputes = BooleanField("Handles disputes")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)


class FlagForm(FlaskForm):
    """A yes/no switch (dispute handler, active, away)."""
    value = SelectField(choices=[SelectChoice("1", "yes"), SelectChoice("0", "no")])


class PasswordForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired()])
    new = PasswordField("New password (10 characters or more)", validators=[DataRequired(), Length(min=10, max=200)])


def receive_form(items, formdata=None):
    """Per item: the units that arrived (0 … announced) and their condition."""

    class ReceiveForm(FlaskForm):
        source = HiddenField()

    for item in items:
        setattr(ReceiveForm, f"qty_{item.id}", QuantityField(f"{item.name}, received", maximum=item.quantity,
                                                              default=item.quantity))
        setattr(ReceiveForm, f"cond_{item.id}", SelectField(
            "Condition", choices=CONDITION_CHOICES, default=item.condition or "like_new"))
    return ReceiveForm() if formdata is None else ReceiveForm(formdata=formdata)


# --- disputes ----------------------------------------------------------------------------------

OUTCOME_CHOICES = [SelectChoice("accept", "Accept: refund the disputed items in full"),
                   SelectChoice("partial", "Partial: refund part of their value"),
                   SelectChoice("reject", "Reject: refund nothing for them")]


class DisputeMessageForm(FlaskForm):
    # The customers' limit (their messages on the status page): one conversation, one size.
    body = TextAreaField("Reply", filters=[_crlf], validators=[
        DataRequired(message="Write your reply."),
        Length(max=MESSAGE_MAX, message="Keep the reply to %(max)d characters at most (it has %(length)d).")])


class ResolveForm(FlaskForm):
    outcome = RadioField("Outcome", choices=OUTCOME_CHOICES, validators=[
        DataRequired(message="Choose an outcome.")])
    amount = MoneyField("Amount", required=False)  # partial only; the service says when it is missing
    # The contract (and the API) want a note for every outcome: it is what the customer reads.
    note = TextAreaField("Note", filters=[_crlf], validators=[
        DataRequired(message="Write a note for the customer: they read it with the decision."),
        Length(max=2000, message="Keep the note to %(max)d characters at most (it has %(length)d).")])

    def validate(self, extra_validators=None) -> bool:
        if self.outcome.data != "partial":
            self.amount.ignore()  # only a partial outcome has an amount
        return super().validate(extra_validators)


def _agent_id(value):
    return int(value) if str(value).isdigit() else None


class ReassignForm(FlaskForm):
    # Whether the agent may take it is the service's word (one message), not "Not a valid choice".
    agent_id = SelectField("Handler", coerce=_agent_id, validate_choice=False,
                           validators=[DataRequired(message="Choose a handler.")])
