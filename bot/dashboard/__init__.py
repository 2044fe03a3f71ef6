"""The shop's dashboard: figures, conversations and unknown messages as server-rendered HTML."""

from bot.dashboard.routes import dashboard_routes

__all__ = ["dashboard_routes"]
