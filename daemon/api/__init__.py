"""The HTTP API: thin routers over the daemon's services."""
