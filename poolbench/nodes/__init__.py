"""One run across many hosts: nodes that join, start at one instant, and are merged.

``session.py`` is one node's part (join, barrier, heartbeat, finish); ``registry.py``
the table in the coordinator database; ``clock.py`` the offset to the server's clock.
"""

from .session import NodeOutcome, NodeSession, NodeSpec, StartInfo

__all__ = ["NodeOutcome", "NodeSession", "NodeSpec", "StartInfo"]
