"""The Heartbeat API: devices send beats, anyone reads presence statistics."""
