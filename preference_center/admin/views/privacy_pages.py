"""Privacy pages for staff: one person's printable consent proof (readable by every role that reads the contact)."""
from __future__ import annotations

import json

from flask import Response, render_template, request

from ... import proof
from ...commands import proof as proof_commands
from ...extensions import db
from .. import auth, bp
from .contact_pages import _contact


@bp.get("/contacts/<int:contact_id>/proof")
def contact_proof(contact_id: int):
    """The proof as a printable page, or (?format=json) the same document the API serves, as a download."""
    contact = _contact(contact_id)
    document = proof_commands.export(auth.current_actor(), proof.subject_of_contact(contact))
    db.session.commit()
    if request.args.get("format") == "json":
        return Response(json.dumps(document, indent=2, ensure_ascii=False), mimetype="application/json",
                        headers={"Content-Disposition": f'attachment; filename="consent-proof-{contact.id}.json"'})
    return render_template("admin/proof.html", contact=contact, proof=document)
