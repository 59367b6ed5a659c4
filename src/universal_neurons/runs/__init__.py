"""Runs: the stages that take a profile and write into its run folder (the universality pass and its tables, the
neuron selection, the untrained control, properties, families, emergence, sweeps). Imports every lower stage."""
