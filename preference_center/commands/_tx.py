"""Work that must wait for the commit: mail that announces a change goes out only once the change holds."""
from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session

from ..extensions import db

log = logging.getLogger(__name__)
_KEY = "pc.after_commit"


def after_commit(fn: Callable[[], object]) -> None:
    """Run `fn` once the current transaction commits (dropped if it rolls back).

    `fn` must not use the database session: compute what it needs before.
    """
    db.session.info.setdefault(_KEY, []).append(fn)


@event.listens_for(Session, "after_commit")
def _run(session: Session) -> None:
    for fn in session.info.pop(_KEY, []):
        try:
            fn()
        except Exception:  # noqa: BLE001 - the change is committed; a failed notice is logged, not raised
            log.exception("after-commit work failed")


@event.listens_for(Session, "after_rollback")
def _drop(session: Session) -> None:
    session.info.pop(_KEY, None)
