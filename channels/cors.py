"""CORS for the city website's form: which origins may call the public intake endpoints.

``cors_origins`` in ``channels.yaml`` lists exact origins (``https://www.example.gov.cn``) or
``"*"``. Allowed origins get ``Access-Control-Allow-Origin`` on every answer, errors included
(the page must be able to read the Chinese error message); other origins get no CORS headers
at all, so the browser keeps the answer from the page. A preflight (``OPTIONS``) from an
origin that is not allowed is answered ``403 origin_not_allowed``.

No credentials (cookies) are involved: the form is anonymous, so
``Access-Control-Allow-Credentials`` is never sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ALLOWED_METHODS = "POST, OPTIONS"
# Headers a browser form may send besides the CORS-safelisted ones.
ALLOWED_HEADERS = frozenset({"content-type", "accept", "accept-language", "x-requested-with"})
MAX_AGE_SECONDS = "600"


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    """The configured origins; ``allow_any`` when ``"*"`` is among them."""

    origins: frozenset[str]
    allow_any: bool

    @classmethod
    def from_config(cls, origins: tuple[str, ...]) -> CorsPolicy:
        cleaned = frozenset(o.strip().rstrip("/").lower() for o in origins if o.strip())
        return cls(cleaned - {"*"}, "*" in cleaned)

    def allows(self, origin: str | None) -> bool:
        if not origin:
            return False
        return self.allow_any or origin.rstrip("/").lower() in self.origins

    def response_headers(self, origin: str | None) -> dict[str, str]:
        """Headers for an actual (non-preflight) answer to ``origin``; empty when not
        allowed."""
        if not self.allows(origin):
            return {}
        # Retry-After tells the page how long to wait after a 429.
        if self.allow_any:
            return {"Access-Control-Allow-Origin": "*",
                    "Access-Control-Expose-Headers": "Retry-After"}
        assert origin is not None
        # The answer differs per Origin: caches must key on it.
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
                "Access-Control-Expose-Headers": "Retry-After"}

    def preflight_headers(self, origin: str | None,
                          request_headers: Mapping[str, str]) -> dict[str, str] | None:
        """Headers for a preflight answer, or None when it must be refused (origin not
        allowed, or a method / header the endpoints do not take)."""
        if not self.allows(origin):
            return None
        method = request_headers.get("Access-Control-Request-Method", "").strip().upper()
        if method and method != "POST":
            return None
        asked = [h.strip().lower()
                 for h in request_headers.get("Access-Control-Request-Headers", "").split(",")
                 if h.strip()]
        if any(h not in ALLOWED_HEADERS for h in asked):
            return None
        headers = self.response_headers(origin)
        headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
        if asked:
            headers["Access-Control-Allow-Headers"] = ", ".join(asked)
        headers["Access-Control-Max-Age"] = MAX_AGE_SECONDS
        return headers
