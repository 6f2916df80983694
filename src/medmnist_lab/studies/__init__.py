"""Studies: specs expanded to cells, run on a backend (local processes or Ray), recorded in a
SQLite results store, summarised as tables with confidence intervals and significance tests."""
