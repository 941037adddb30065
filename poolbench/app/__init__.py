"""The user's own service under load: its engine (binding.py)."""

from .binding import AppEngine, BoundApp, app_target, bound_app, find_engine, import_object

__all__ = ["AppEngine", "BoundApp", "app_target", "bound_app", "find_engine", "import_object"]
