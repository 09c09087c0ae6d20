"""Moved to `preference_center.tasks`; kept so `from worker.tasks import enqueue` still works."""
from preference_center.tasks import *  # noqa: F401,F403
from preference_center.tasks import enqueue  # noqa: F401
