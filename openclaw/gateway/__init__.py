"""The WebSocket gateway: frame model, protocol, and the draining service."""
