"""Request and response models of the API, separate from drivers' and database types."""
