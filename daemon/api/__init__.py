"""The HTTP API: thin routers over the daemon's services (`routes/`), their request and
response models (`schemas/`), and the one mapping of domain errors to HTTP (`errors.py`)."""
