"""Topics: list, create, edit, retire and restore."""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ... import engagement, topics
from ...commands import DomainError
from ...commands import topics as topic_commands
from ...extensions import db
from .. import auth, bp
from ..forms import TopicEditForm, TopicForm
from .common import _field_error


@bp.get("/topics")
def topic_list():
    return render_template("admin/topics.html", topics=topics.all_topics())


@bp.route("/topics/new", methods=["GET", "POST"])
def topic_new():
    form = TopicForm()
    status = 200
    if form.validate_on_submit():
        try:
            topic = topic_commands.create(auth.current_actor(), form.key.data.strip(),
                                          {"kind": form.kind.data, **form.data_for_domain()})
        except DomainError as exc:
            db.session.rollback()
            _field_error(form, exc)
        else:
            db.session.commit()
            flash(_("Topic %(name)s created.", name=topic.name))
            return redirect(url_for("admin.topic_list"))
    if request.method == "POST":
        status = 422
    return render_template("admin/topic_form.html", form=form, topic=None), status


@bp.route("/topics/<key>", methods=["GET", "POST"])
def topic_edit(key: str):
    topic = topics.get(key) or abort(404)
    form = TopicEditForm(kind=topic.kind, obj=topic)
    status = 200
    if form.validate_on_submit():
        try:
            changed = topic_commands.update(auth.current_actor(), topic, form.data_for_domain())
        except DomainError as exc:
            db.session.rollback()
            _field_error(form, exc)
        else:
            db.session.commit()
            flash(_("Topic %(name)s saved.", name=topic.name) if changed else _("Nothing changed."))
            return redirect(url_for("admin.topic_list"))
    if request.method == "POST":
        status = 422
    return render_template("admin/topic_form.html", form=form, topic=topic,
                           tracks=engagement.topic_tracks(topic)), status


@bp.post("/topics/<key>/retire")
def topic_retire(key: str):
    topic = topics.get(key) or abort(404)
    if request.form.get("confirm") != "1":
        return render_template(
            "admin/confirm.html", heading=_("Retire “%(name)s”?", name=topic.name), summary=None, warning=None,
            lines=[_("A retired topic is no longer offered on the preference page and nothing more is sent for it; "
                     "scheduled campaigns of this topic send nothing. You can restore it later.")],
            action=url_for("admin.topic_retire", key=topic.key), hidden={}, confirm_label=_("Yes, retire it"),
            button_class="danger", back=url_for("admin.topic_list"), back_label=_("Topics"),
            cancel_label=_("No, keep it"))
    topic_commands.retire(auth.current_actor(), topic)
    db.session.commit()
    flash(_("Topic %(name)s retired: it is no longer offered or sent.", name=topic.name))
    return redirect(url_for("admin.topic_list"))


@bp.post("/topics/<key>/restore")
def topic_restore(key: str):
    topic = topics.get(key) or abort(404)
    topic_commands.restore(auth.current_actor(), topic)
    db.session.commit()
    flash(_("Topic %(name)s is live again.", name=topic.name))
    return redirect(url_for("admin.topic_list"))
