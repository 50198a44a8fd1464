"""The ground every app stands on: errors, GitHub's name rules and canonical forms,
durations, settings from the environment and metrics. A plain package, not a Django app."""
