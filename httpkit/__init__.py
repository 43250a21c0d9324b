"""The one HTTP toolkit of the service: JSON error bodies and the middleware that makes them
(:mod:`httpkit.errors`), the one JSON responder (:mod:`httpkit.responses`), the one request
body reader (:mod:`httpkit.bodies`), bearer-token identification (:mod:`httpkit.auth`) and
the HTTP server under the application (:mod:`httpkit.server`).

It imports nothing of the project but ``config`` (an import-linter contract in
pyproject.toml), so every slice's HTTP module may use it without an arrow up to ``hotline/``.

Named ``httpkit``, not ``http``: a top-level ``http`` package would shadow the standard
library's (aiohttp imports ``http.cookies`` and ``http.HTTPStatus``), and no installed
distribution provides an ``httpkit`` module (``import httpkit`` failed before it was made).
"""
