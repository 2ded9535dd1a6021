"""Failure and bad-input suite: failures injected while traffic flows, outputs checked
exactly against what was sent (see docs/failures.md)."""
