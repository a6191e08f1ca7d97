"""Channels: how messages reach the assistant (REST for now; WeChat and web chat later)."""
