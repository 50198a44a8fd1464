"""The ground every app stands on: rules and canonical forms that are the same everywhere
(core.names). A plain package, not a Django app: it has no models."""
