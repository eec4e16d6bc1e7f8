"""Dockyard: a self-hosted production server for LangGraph and plain Python agents."""

__version__ = "0.1.0"
