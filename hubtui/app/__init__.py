"""The Textual app (issue 8 builds its screens)."""
