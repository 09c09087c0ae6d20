"""The command layer: one function per action, called by every door (pages, API, CLI, tasks, import, webhook).

Each command takes the Actor, checks the rules (SPEC section 7), writes the
ledger and one audit entry in the caller's transaction, and raises
`DomainError`, which each door maps to its own answer. Doors parse, call,
commit and answer; they never write the ledger, the audit log or a
suppression themselves. `people.find`/`people.get` are the one loader of a
contact: they settle its waiting one-click opt-outs before anything decides.
"""
from ..actors import Actor, ActorKind
from ..errors import Code, DomainError
from . import access, campaigns, consent, imports, messages, people, proof, requests, topics, webhooks, wordings

__all__ = ["Actor", "ActorKind", "Code", "DomainError", "access", "campaigns", "consent", "imports", "messages", "people",
           "proof", "requests", "topics", "webhooks", "wordings"]
