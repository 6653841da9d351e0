"""HTTP ingest: records posted to the API server (``POST /api/v1/logs``): ``config`` and ``source``."""
