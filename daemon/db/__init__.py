"""The daemon's database: engine set-up now, typed models and migrations as they come."""
