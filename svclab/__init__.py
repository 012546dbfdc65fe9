"""svclab package."""
