"""Configuration: a profile (its YAML, overrides and run folder), its schema, the shipped zoo's recipe and where a
model source's files are. Imports only `core`.

The face re-exports the names most callers need; a module of the package imports from `config.profile`."""

from .profile import Profile, available_profiles, load_profile, name_of, run_name, split_overrides

__all__ = ["Profile", "available_profiles", "load_profile", "name_of", "run_name", "split_overrides"]
