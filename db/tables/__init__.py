"""The tables, one module per slice: :mod:`~db.tables.telephony` (calls, queue intervals, seat
pauses), :mod:`~db.tables.router` (tickets and their events, outbox, number counters, knowledge
base), :mod:`~db.tables.asr` (call transcripts).

Importing this package imports every slice's module, so ``Base.metadata`` holds the whole schema
(what migrations and the model/migration comparison need).
"""

from __future__ import annotations

from db.tables import asr, router, telephony
from db.tables.base import Base

__all__ = ["Base", "asr", "router", "telephony"]
