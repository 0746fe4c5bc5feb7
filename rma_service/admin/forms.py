"""Flask-WTF forms of the admin view: every POST carries and checks a CSRF token."""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (BooleanField, DecimalField, HiddenField, IntegerField, PasswordField, RadioField,
                     SelectField, StringField, TextAreaField)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import AnyOf, DataRequired, Length, NumberRange, Optional, Regexp

from ..domain.policy import CONDITIONS, DISPOSITIONS
from ..services.agents import ROLES

CONDITION_CHOICES = [SelectChoice(c, c.replace("_", " ")) for c in CONDITIONS]
DISPOSITION_CHOICES = [SelectChoice(d, d.capitalize()) for d in DISPOSITIONS]
ROLE_CHOICES = [SelectChoice(r, r) for r in ROLES]
EMAIL = Regexp(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", message="Enter an email address.")


class LoginForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])
    next = HiddenField()


class ActionForm(FlaskForm):
    """A button: only the CSRF token travels (approve, cancel, sign out …)."""
    source = HiddenField()  # "station" when posted from the receiving station


class RejectForm(FlaskForm):
    reason = TextAreaField("Reason (the customer reads it)", validators=[DataRequired(), Length(max=2000)])


class TriageForm(FlaskForm):
    disposition = RadioField("Disposition", choices=DISPOSITION_CHOICES, validators=[DataRequired()])
    condition = SelectField("Condition", choices=CONDITION_CHOICES, validators=[DataRequired()])
    note = StringField("Note", validators=[Optional(), Length(max=2000)])
    source = HiddenField()


class RefundForm(FlaskForm):
    amount = DecimalField("Amount", places=2, validators=[DataRequired(), NumberRange(min=0.01)])
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
        setattr(ReceiveForm, f"qty_{item.id}", IntegerField(
            "Received", default=item.quantity, validators=[NumberRange(min=0, max=item.quantity)]))
        setattr(ReceiveForm, f"cond_{item.id}", SelectField(
            "Condition", choices=CONDITION_CHOICES, default=item.condition or "like_new"))
    return ReceiveForm() if formdata is None else ReceiveForm(formdata=formdata)


# --- disputes ----------------------------------------------------------------------------------

OUTCOME_CHOICES = [SelectChoice("accept", "Accept: refund the disputed items in full"),
                   SelectChoice("partial", "Partial: refund part of their value"),
                   SelectChoice("reject", "Reject: refund nothing for them")]


class DisputeMessageForm(FlaskForm):
    body = TextAreaField("Reply to the customer", validators=[DataRequired(), Length(max=5000)])


class ResolveForm(FlaskForm):
    outcome = RadioField("Outcome", choices=OUTCOME_CHOICES, validators=[DataRequired()])
    amount = DecimalField("Amount refunded for the disputed items (partial)", places=2,
                          validators=[Optional(), NumberRange(min=0)])
    note = TextAreaField("Note (the customer reads it)", validators=[Optional(), Length(max=2000)])


class ReassignForm(FlaskForm):
    agent_id = SelectField("Give to", coerce=int, validators=[DataRequired()])
