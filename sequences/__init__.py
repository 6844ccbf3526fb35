"""NINA-style sequence engine: instructions, triggers, conditions, containers, runner."""
