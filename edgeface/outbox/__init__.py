"""The field unit's outbox: results kept durably on disk until the broker acknowledged them.

from edgeface.outbox import Outbox, Priority, new_id
box = Outbox("var/outbox.sqlite3")
box.put(new_id(), topic, payload_bytes, Priority.MATCH)   # durable when it returns
rows = box.fetch(100)                                     # next to send, matches first
box.ack([r.id for r in rows])                             # only after the broker's PUBACK
"""

from .rows import OutboxStats, Pending, Priority
from .store import Outbox
from .uuid7 import is_uuid7, new_id, uuid7, uuid7_time_ms

__all__ = ["Outbox", "OutboxStats", "Pending", "Priority", "is_uuid7", "new_id", "uuid7", "uuid7_time_ms"]
