"""Explorer: a static page per neuron (its records, its HTML, the site of a run). Imports `runs` and below."""
