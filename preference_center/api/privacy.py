"""Privacy operations of /api/v1: one person's consent proof (SPEC section 8). Models and views together."""
from __future__ import annotations

from typing import Any

from flask import g
from pydantic import Field

from .. import proof
from ..commands import proof as proof_commands
from ..extensions import db
from .operations import Answer, operation
from .schemas import EmailPath, Output


class ProofWording(Output):
    id: int
    version: str
    locale: str
    text: str = Field(description="the exact wording the person was shown")
    hash: str | None = Field(description="sha256 of the wording, fixed when it was published")
    current_hash: str = Field(description="sha256 of the wording as stored now (differs: it was changed)")
    published_by: str | None
    published_at: str = Field(json_schema_extra={"format": "date-time"})


class ProofEvent(Output):
    position: int = Field(description="1 for the person's first event")
    id: int
    chain_position: int = Field(description="the event's place in the whole ledger (ids are consecutive)")
    contact_id: int | None
    action: str
    scope: str
    topic: str | None
    topic_name: str | None
    legal_basis: str | None
    source: str
    confirmed: bool
    detail: dict[str, Any]
    occurred_at: str = Field(json_schema_extra={"format": "date-time"})
    ip: str | None = Field(description="null when not known or erased")
    user_agent: str | None
    personal_data_erased: bool
    consent_text_version: str | None
    wording: ProofWording | None = Field(description="the wording the event cites, in full")
    wording_hash: str | None
    pii_digest: str
    prev_hash: str
    hash: str
    verified: bool = Field(description="hash, link to its predecessor, wording and personal-field digest all check")
    problems: list[str]


class ProofContact(Output):
    id: int
    status: str
    relationship: str
    created_at: str = Field(json_schema_extra={"format": "date-time"})
    erased_at: str | None = Field(json_schema_extra={"format": "date-time"})


class ProofSuppression(Output):
    scope: str
    reason: str
    event_id: int | None
    since: str = Field(json_schema_extra={"format": "date-time"})


class ProofVerification(Output):
    ok: bool = Field(description="the whole chain verifies and so does every event of this person")
    chain_ok: bool
    events_ok: bool
    checked: int
    problems: list[str]


class ProofHead(Output):
    event_id: int
    hash: str = Field(description="the ledger head hash when the proof was made")


class ConsentProof(Output):
    format: str
    email: str | None
    email_hash: str = Field(description="the keyed hash of the address (kept after erasure)")
    generated_at: str = Field(json_schema_extra={"format": "date-time"})
    contacts: list[ProofContact] = Field(description="every contact row that held the address, erased ones too")
    events: list[ProofEvent]
    suppressions: list[ProofSuppression]
    verification: ProofVerification
    head: ProofHead
    digest: str = Field(description="sha256 of this document's canonical JSON (sorted keys) without `digest`")


@operation("GET", "/contacts/{email}/proof", summary="The consent proof of one person", tag="Consent",
           params=EmailPath, answers={200: Answer("The proof", ConsentProof)},
           not_found="No contact ever had that address")
def get_proof(email: str):
    """Every ledger event of the address (erased rows included) with the wording text it cites, its hashes,
    its place in the chain and its check; the chain's verification and the ledger head hash of the moment."""
    document = proof_commands.export(g.actor, proof.subject_of_address(email))
    db.session.commit()
    return document
