"""Measures: the analyses as functions of activations, weights and tables (correlation passes, co-moments, nulls,
matching, statistics, neuron roles, verdicts). They take arrays and models, never a profile. Imports only `core`."""
