"""Renderers: pure functions of the result data (terminal, JSON), and the live view."""
