"""The application: settings, the FastAPI app (`app.py`, `api/`), the services (one module per
resource, raising `daemon.errors`), the database (`db/`), the processing worker and the CLI.

Routes reach the database only through a service; services reach devices through `drivers`
and the engine through `sequences`.
"""
