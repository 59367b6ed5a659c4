"""Core: errors, atomic files, checksums, the cache's keys, locks, the paper's numbers, the command line's
helpers and paths. It imports nothing of the package."""
