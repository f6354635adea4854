"""`estatelens serve`: FastAPI app and page over the photo index."""
from .app import create_app

__all__ = ["create_app"]
