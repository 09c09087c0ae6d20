"""Who acts: every command takes an Actor, and the ledger and the audit log name it the same way."""
from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class ActorKind(StrEnum):
    STAFF = "staff"      # a signed-in staff user (name: their email)
    API = "api"          # an API token (name: the token's name)
    LINK = "link"        # the recipient, through a signed link (name: the page, a LinkSource)
    IMPORT = "import"    # a CSV import job (name: its id)
    WEBHOOK = "webhook"  # the mail provider's event webhook (name: the provider)
    SYSTEM = "system"    # the service itself: retention, the scheduler (name: the job)
    CLI = "cli"          # an operator at the command line


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    name: str
    ip: str | None = None
    user_agent: str | None = None

    @property
    def label(self) -> str:
        """How the audit log names the actor: 'staff:ann@example.com', 'link:preferences-page', 'cli'."""
        return str(self.kind) if self.kind == ActorKind.CLI else f"{self.kind}:{self.name}"

    @property
    def source(self) -> str:
        """How ledger events name their source: a recipient's page by its own name, others by label."""
        return self.name if self.kind in (ActorKind.LINK, ActorKind.SYSTEM) else self.label

    @property
    def is_the_person(self) -> bool:
        """Whether the recipient acts themselves: only they may confirm a return to marketing."""
        return self.kind == ActorKind.LINK

    def via(self, name: str) -> Actor:
        """The same actor, acting through another page or job."""
        return replace(self, name=name)


def staff(email: str, ip: str | None = None) -> Actor:
    return Actor(ActorKind.STAFF, email, ip)


def api(token_name: str, ip: str | None = None) -> Actor:
    return Actor(ActorKind.API, token_name, ip)


def link(page: str, ip: str | None = None, user_agent: str | None = None) -> Actor:
    return Actor(ActorKind.LINK, str(page), ip, user_agent)


def import_job(job_id: int) -> Actor:
    return Actor(ActorKind.IMPORT, str(job_id))


def webhook(provider: str = "sendgrid") -> Actor:
    return Actor(ActorKind.WEBHOOK, provider)


def system(job: str) -> Actor:
    return Actor(ActorKind.SYSTEM, job)


CLI = Actor(ActorKind.CLI, "cli")


def from_label(label: str) -> Actor:
    """An Actor from a stored label ('api:crm', 'staff:ann@example.com', 'cli')."""
    kind, _, name = label.partition(":")
    try:
        return Actor(ActorKind(kind), name or kind)
    except ValueError:
        return Actor(ActorKind.SYSTEM, label)
