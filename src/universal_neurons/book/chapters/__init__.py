"""The book's chapters: each computes its tables, figures, glued numbers and verdict sentences."""
