"""The complete access copy (Art. 15 and 20): everything we hold about a person, with the Art. 15(1) information.

`complete(contact)` is `rights.holdings` plus what the copy owes beyond the
data page: each consent event with the exact wording it cites, the mail we
sent or skipped (campaign or system message, date, status), the suppressions
that concern the address, and a plain-language section generated from the
settings (purposes per topic, recipients such as the mail provider,
retention periods, where the data came from, the rights and the right to
complain to a supervisory authority). `to_zip` packs it as one JSON file,
one CSV file per section and the information as text.
"""
from __future__ import annotations

import csv
import io
import json
import zipfile

from flask import current_app
from sqlalchemy import select

from . import attributes, rights
from .extensions import db
from .models import (
    Campaign,
    ConsentEvent,
    ConsentText,
    Contact,
    Delivery,
    ImportJob,
    Suppression,
    SystemMessage,
    Topic,
)

PROVIDERS = {
    "sendgrid": "Twilio SendGrid, Inc. (email delivery; United States, under the EU Standard Contractual Clauses)",
    "smtp": "our own mail server (email delivery)",
    "outbox": "nobody: this installation writes mail to local files (development mode)",
}
RIGHTS = (
    "access: a copy of your data (this file)",
    "rectification: correct your details on your data page",
    "erasure: erase your data from your data page",
    "restriction: restrict processing from your data page",
    "objection: object to direct marketing in one click on your data page",
    "withdrawal of consent: untick a topic on your preferences page, or use the link in every email",
    "portability: download this copy, or hand a one-time link to another company",
)


def complete(contact: Contact) -> dict:
    """Everything we hold about `contact`, for the person (JSON-ready)."""
    data = rights.holdings(contact)
    wordings = _wordings(contact)
    for event in data["consent_history"]:
        event["wording"] = wordings.get(event["id"])
    data["deliveries"] = deliveries(contact)
    data["suppressions"] = [{"scope": s.scope, "reason": s.reason, "since": s.created_at.isoformat()}
                            for s in db.session.scalars(select(Suppression)
                                                        .where(Suppression.email_hash == contact.email_hash)
                                                        .order_by(Suppression.id))]
    data["information"] = information(contact)
    return data


def _wordings(contact: Contact) -> dict[int, dict]:
    rows = db.session.execute(select(ConsentEvent.id, ConsentText.version, ConsentText.locale, ConsentText.text)
                              .join(ConsentText, ConsentText.id == ConsentEvent.consent_text_id)
                              .where(ConsentEvent.contact_id == contact.id))
    return {row.id: {"version": row.version, "locale": row.locale, "text": row.text} for row in rows}


def deliveries(contact: Contact) -> list[dict]:
    """Each campaign or system message we sent (or skipped, and why) to the contact, oldest first."""
    topics = {t.id: t for t in db.session.scalars(select(Topic))}
    rows = db.session.execute(
        select(Delivery.created_at, Delivery.updated_at, Delivery.status, Delivery.reason, Campaign.name,
               Campaign.subject, Campaign.topic_id, SystemMessage.subject.label("message_subject"),
               SystemMessage.topic_id.label("message_topic_id"))
        .outerjoin(Campaign, Campaign.id == Delivery.campaign_id)
        .outerjoin(SystemMessage, SystemMessage.id == Delivery.system_message_id)
        .where(Delivery.contact_id == contact.id).order_by(Delivery.id))
    result = []
    for row in rows:
        topic = topics.get(row.topic_id or row.message_topic_id)
        result.append({
            "kind": "campaign" if row.name is not None else "system message",
            "campaign": row.name,
            "subject": row.subject if row.name is not None else row.message_subject,
            "topic": topic.name if topic else None,
            "date": (row.updated_at or row.created_at).isoformat(),
            "status": row.status,
            "reason": row.reason,
        })
    return result


def information(contact: Contact) -> dict:
    """The Art. 15(1) information in plain words, from the settings and the topics."""
    config = current_app.config
    topics = db.session.scalars(select(Topic).where(Topic.retired.is_(False)).order_by(Topic.kind, Topic.key))
    first = db.session.scalar(select(ConsentEvent.source).where(ConsentEvent.contact_id == contact.id)
                              .order_by(ConsentEvent.id).limit(1))
    return {
        "controller": config["PC_POSTAL_ADDRESS"],
        "privacy_contact": config.get("PC_PRIVACY_CONTACT") or config["PC_FROM_EMAIL"],
        "purposes": [{"topic": t.name, "kind": t.kind, "legal_basis": t.legal_basis,
                      "purpose": _purpose(t)} for t in topics],
        "categories_of_data": ["email address", "name, company, job title, phone and language, where you gave them",
                               "other details about you our staff or systems recorded (the attributes in this copy)",
                               "your choices about our email, with the time, IP address and browser of each",
                               "which of our emails were sent to you, and whether they were delivered"],
        "recipients": [PROVIDERS.get(config["PC_MAIL_TRANSPORT"], config["PC_MAIL_TRANSPORT"]),
                       "our staff who manage email, each with their own account"],
        "retention": (f"We erase your details {config['PC_RETENTION_DAYS']} days after your last interaction with "
                      "us when we have no other reason to keep them, and erase them at once when you ask. Records "
                      f"of single emails are reduced to anonymous daily counts after "
                      f"{config['PC_DELIVERY_RETENTION_DAYS']} days. A one-way fingerprint of your address stays "
                      "on our block list so that we never email you by mistake again."),
        "source": _source(first, contact),
        "automated_decisions": "none: nothing about you is decided by automated means or profiling",
        "your_rights": list(RIGHTS),
        "right_to_complain": ("You may complain to a data protection supervisory authority, in particular in the "
                              "country where you live or work or where you think the law was broken: "
                              f"{config.get('PC_SUPERVISORY_AUTHORITY') or 'your national data protection authority'}."),
    }


def _purpose(topic: Topic) -> str:
    about = f" ({topic.description})" if topic.description else ""
    if topic.kind == "system":
        return f"service email that is part of our contract with you{about}; sent even if you opt out of marketing"
    if topic.legal_basis == "legitimate_interest":
        return (f"email to our customers about similar products{about}, on our legitimate interest; you may object "
                "at any time, in one click")
    return f"marketing email you asked for{about}, on your consent; you may withdraw it at any time"


def _source(first_source: str | None, contact: Contact) -> str:
    if first_source is None:
        return "you gave us your address"
    kind, _, rest = first_source.partition(":")
    if kind == "import":
        job = db.session.get(ImportJob, int(rest.partition(":")[0])) if rest.partition(":")[0].isdigit() else None
        if job is not None and job.third_party:
            return f"{job.third_party} gave us your address, with your consent to share it ({job.share_evidence})" \
                if job.share_evidence else f"{job.third_party} gave us your address"
        return "a list we imported (see the source named in your history)"
    if kind == "api":
        return "one of our own systems (for example our shop or customer records)"
    if kind == "staff":
        return "our staff entered it, from a conversation with you"
    return "you gave us your address"


def information_text(info: dict) -> str:
    """The information section as plain text."""
    lines = ["What we do with your data (Art. 15(1) GDPR)", "", f"Who we are: {info['controller']}",
             f"Contact for privacy questions: {info['privacy_contact']}", "", "Why we use your data:"]
    lines += [f"- {p['topic']}: {p['purpose']}" for p in info["purposes"]]
    lines += ["", "What data: " + "; ".join(info["categories_of_data"]), "",
              "Who receives it: " + "; ".join(info["recipients"]), "", f"How long: {info['retention']}", "",
              f"Where it came from: {info['source']}", "", f"Automated decisions: {info['automated_decisions']}", "",
              "Your rights:"]
    lines += [f"- {r}" for r in info["your_rights"]]
    lines += ["", info["right_to_complain"], ""]
    return "\n".join(lines)


CSV_SECTIONS = ("subscriptions", "consent_history", "deliveries", "suppressions", "data_requests")


def to_zip(data: dict) -> bytes:
    """my-data.json, one CSV per section (profile included), information.txt."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("my-data.json", json.dumps(data, indent=2, ensure_ascii=False))
        archive.writestr("profile.csv", _csv([{"field": k, "value": v} for k, v in data["profile"].items()]))
        archive.writestr("attributes.csv", _csv([{"attribute": k, "value": attributes.as_text(v)}
                                                 for k, v in data["attributes"].items()]))
        for section in CSV_SECTIONS:
            archive.writestr(f"{section}.csv", _csv(data[section]))
        archive.writestr("information.txt", information_text(data["information"]))
    return buffer.getvalue()


def _csv(rows: list[dict]) -> str:
    out = io.StringIO()
    columns = list(dict.fromkeys(key for row in rows for key in row)) or ["empty"]
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([rights._cell(row.get(column)) for column in columns])
    return out.getvalue()
