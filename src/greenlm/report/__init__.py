"""Reports: comparison tables, plots, model cards, the environment dump."""
