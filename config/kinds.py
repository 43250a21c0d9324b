"""What kind of demand an intake is and how urgent: the two axes time limits are set on.

Values are English identifiers (config keys, database values); :attr:`label` is the Chinese
name an agent or a unit sees. Source: ``../shared/domain.md`` (seeds 000 and 001).
"""

from __future__ import annotations

from enum import StrEnum


class DemandType(StrEnum):
    """诉求类型 / demand type."""

    consultation = "consultation"
    help = "help"
    complaint = "complaint"
    report = "report"
    suggestion = "suggestion"
    praise = "praise"

    @property
    def label(self) -> str:
        """The Chinese name (咨询, 求助, ...)."""
        return _TYPE_LABELS[self]


class Urgency(StrEnum):
    """紧急程度 / urgency class of a demand."""

    emergency = "emergency"
    basic_living = "basic_living"
    general = "general"
    complex = "complex"

    @property
    def label(self) -> str:
        """The Chinese name (紧急, 基本生活保障, ...)."""
        return _URGENCY_LABELS[self]


_TYPE_LABELS = {
    DemandType.consultation: "咨询",
    DemandType.help: "求助",
    DemandType.complaint: "投诉",
    DemandType.report: "举报",
    DemandType.suggestion: "建议",
    DemandType.praise: "表扬",
}

_URGENCY_LABELS = {
    Urgency.emergency: "紧急",
    Urgency.basic_living: "基本生活保障",
    Urgency.general: "一般",
    Urgency.complex: "复杂",
}
