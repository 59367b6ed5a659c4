"""Models: one loader for every model the book studies, the zoo's training and checkpoints, the shipped zoo and
its release. Imports `core`, `config` and `data`."""
