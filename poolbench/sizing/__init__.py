"""Sizing a pool before a deploy: queueing-theory predictions and measured trials."""
