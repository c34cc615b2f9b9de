"""Every figure of the toolkit, one module per analysis (plain matplotlib ``Figure`` objects)."""
