"""Staff users and API tokens (admins only)."""
from __future__ import annotations

from flask import flash, g, redirect, render_template, url_for
from flask_babel import gettext as _

from ...commands import DomainError, access
from ...extensions import db
from ...i18n import localized
from ...models import ApiToken, StaffUser
from .. import auth, bp, queries
from ..forms import TokenForm, UserForm
from ..labels import label
from .common import _get

ADMIN_ROLES = ("admin",)


@bp.get("/users")
@auth.role_required(*ADMIN_ROLES)
def user_list():
    return render_template("admin/users.html", users=queries.staff_users(), form=UserForm(formdata=None))


@bp.post("/users")
@auth.role_required(*ADMIN_ROLES)
def user_create():
    form = UserForm()
    if form.validate_on_submit():
        try:
            user = access.create_user(auth.current_actor(), form.email.data, form.role.data, form.password.data)
        except DomainError as exc:
            db.session.rollback()
            (form.password if exc.field == "password" else form.email).errors = [localized(exc)]
        else:
            db.session.commit()
            flash(_("%(email)s can now sign in as %(role)s.", email=user.email, role=label(user.role, "role")))
            return redirect(url_for("admin.user_list"))
    return render_template("admin/users.html", users=queries.staff_users(), form=form), 422


@bp.post("/users/<int:user_id>/deactivate")
@auth.role_required(*ADMIN_ROLES)
def user_deactivate(user_id: int):
    user = _get(StaffUser, user_id)
    try:
        access.deactivate_user(auth.current_actor(), user, own_id=g.staff.id)
    except DomainError as exc:
        flash(f"{localized(exc)}.", "error")
        return redirect(url_for("admin.user_list"))
    db.session.commit()
    flash(_("%(email)s is deactivated and signed out everywhere.", email=user.email))
    return redirect(url_for("admin.user_list"))


@bp.post("/users/<int:user_id>/activate")
@auth.role_required(*ADMIN_ROLES)
def user_activate(user_id: int):
    user = _get(StaffUser, user_id)
    access.activate_user(auth.current_actor(), user)
    db.session.commit()
    flash(_("%(email)s can sign in again.", email=user.email))
    return redirect(url_for("admin.user_list"))


@bp.get("/tokens")
@auth.role_required(*ADMIN_ROLES)
def token_list():
    return render_template("admin/tokens.html", tokens=queries.api_tokens(), form=TokenForm(formdata=None),
                           plaintext=None)


@bp.post("/tokens")
@auth.role_required(*ADMIN_ROLES)
def token_create():
    form = TokenForm()
    plaintext = None
    if form.validate_on_submit():
        try:
            token, plaintext = access.create_token(auth.current_actor(), form.name.data, admin=form.admin.data)
        except DomainError as exc:
            db.session.rollback()
            form.name.errors = [localized(exc)]
        else:
            db.session.commit()
            # Shown once, in this response only: never in a redirect or the session.
            return render_template("admin/tokens.html", tokens=queries.api_tokens(),
                                   form=TokenForm(formdata=None), plaintext=plaintext, created=token), 201
    return render_template("admin/tokens.html", tokens=queries.api_tokens(), form=form, plaintext=None), 422


@bp.post("/tokens/<int:token_id>/revoke")
@auth.role_required(*ADMIN_ROLES)
def token_revoke(token_id: int):
    token = _get(ApiToken, token_id)
    if access.revoke_token(auth.current_actor(), token):
        db.session.commit()
        flash(_("Token %(name)s revoked.", name=token.name))
    return redirect(url_for("admin.token_list"))
