"""The read side: order intake and status, merchant insights and their dashboard, over HTTP.

``python -m api serve`` runs it (Litestar on granian); ``api.app`` has the routes,
``api.intake`` the order path, ``api.insights`` the warehouse/Redis reads and their cache,
``api.figures`` the plain figure logic, ``api.auth`` tokens and rate limits.
"""
