"""The consent-proof command: build one person's proof and audit who pulled it (it holds IPs and user agents)."""
from __future__ import annotations

from .. import audit, proof
from ..actors import Actor
from ..errors import N_, Code, DomainError


def export(actor: Actor, subject: proof.Subject) -> dict:
    """The proof document of `subject` (see proof.py); 404 when the address was never a contact."""
    document = proof.build(subject)
    if not document["contacts"]:
        raise DomainError(N_("no contact ever had that email address"), "email", code=Code.NOT_FOUND)
    audit.record(actor, "contact.proof", target_type="contact", target_id=document["contacts"][-1]["id"],
                 detail={"events": len(document["events"]), "head_hash": document["head"]["hash"],
                         "verified": document["verification"]["ok"], "digest": document["digest"]})
    return document
