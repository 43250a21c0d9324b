"""``routing.yaml``: how intakes become work orders (classification rules and model, repeats,
ticket numbering, the optional outbound adapter, the knowledge base)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from config.classify import ClassifyRules


class RepeatConfig(BaseModel):
    """``routing.repeats``: how alike and how recent counts as the same matter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_days: Annotated[int, Field(ge=1, le=3660)] = 30
    same_citizen_similarity: Annotated[float, Field(gt=0, le=1)] = 0.45
    related_similarity: Annotated[float, Field(gt=0, le=1)] = 0.6
    max_related: Annotated[int, Field(ge=0, le=100)] = 10
    # Newest orders at the batch's places compared for related orders (a hot spot's newest
    # are the ones a new demand relates to; older ones are not read every batch).
    place_lookback: Annotated[int, Field(ge=1, le=10000)] = 300


class TicketSettings(BaseModel):
    """Ticket backend settings (``tickets:`` in the config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    number_prefix: str = Field(default="GD", pattern=r"^[A-Z]{1,8}$")
    """Letters in front of every ticket number (GD = 工单)."""
    max_extensions: int = Field(default=3, ge=0, le=10)
    """Extensions (延期) granted at most per order; the rules say 3."""


class OutboundConfig(BaseModel):
    """``routing.outbound``: where and how tickets are handed to the city's own system."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    url: Annotated[str, Field(pattern=r"^https?://")] = "http://127.0.0.1:9/tickets"
    # Sent as "Authorization: Bearer <token>" when set (keep it in the environment).
    token: SecretStr | None = None
    timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 8
    backoff_initial: Annotated[float, Field(gt=0, le=600)] = 1.0
    backoff_max: Annotated[float, Field(gt=0, le=3600)] = 300.0
    # The outbox (router/outbox.py): how often it looks for due tickets when nothing woke it,
    # how many it claims at once and how many POSTs run at the same time.
    poll_seconds: Annotated[float, Field(gt=0, le=600)] = 2.0
    batch: Annotated[int, Field(ge=1, le=1000)] = 50
    concurrency: Annotated[int, Field(ge=1, le=100)] = 8


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
