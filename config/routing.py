"""``routing.yaml``: how intakes become work orders (classification rules and model, repeats,
ticket numbering, the optional outbound adapter, the knowledge base)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from router.classify import ClassifyRules
from router.outbound import OutboundConfig
from router.repeats import RepeatConfig
from router.ticket_store import TicketSettings


class RoutingConfig(BaseModel):
    """The ``routing`` section (its own file, ``routing.yaml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Consume the intake stream and make tickets in this instance.
    enabled: bool = True
    # Made by `hotline router train history.csv --out PATH`; without it, rules only.
    model_path: str = "var/router-model.joblib"
    # Knowledge-base seed (YAML or CSV, see router/kb.py): articles not yet in the database
    # are imported at start; units then keep their own entries current through the API.
    kb_path: str | None = None
    # How often an instance looks for knowledge-base edits made through another instance.
    kb_refresh_seconds: Annotated[float, Field(gt=0, le=3600)] = 30.0
    classify: ClassifyRules = ClassifyRules()
    repeats: RepeatConfig = RepeatConfig()
    tickets: TicketSettings = TicketSettings()
    outbound: OutboundConfig = OutboundConfig()
    # Bearer tokens of the responsible units (unit id → token) for the ticket API; keep them in
    # HOTLINE_UNIT_TOKENS="city.water=token,...", not in the file.
    unit_tokens: dict[str, Annotated[SecretStr, Field(min_length=8)]] = {}
