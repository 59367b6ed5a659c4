"""Book: the chapters' computations and the helpers their notebooks use to glue, plot and publish. Imports
`explorer` and below."""
