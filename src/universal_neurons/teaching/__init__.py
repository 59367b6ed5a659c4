"""Teaching: the exercises' catalogue, their checks, and the student and instructor notebooks. Imports `book` and
below."""
