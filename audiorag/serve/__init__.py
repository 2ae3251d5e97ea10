"""``audiorag serve``: a REST API (FastAPI) over one library — every query type, a moment's audio,
limits on what clients may send, safe by default. Start it with ``audiorag serve LIBRARY``;
routes, security defaults and measured load: ``docs/serve.md``.

>>> import tempfile
>>> from fastapi.testclient import TestClient
>>> from audiorag import Library
>>> lib = Library.create(tempfile.mkdtemp(), window=2, hop=1)
>>> client = TestClient(create_app(Settings(str(lib.path), token="s3cret")))
>>> client.get("/stats").status_code, client.get("/stats", headers={"Authorization": "Bearer s3cret"}).json()["tracks"]
(401, 0)
"""

from .app import create_app
from .settings import Settings, check_bind, parse_seconds, parse_size

__all__ = ["Settings", "check_bind", "create_app", "parse_seconds", "parse_size"]
