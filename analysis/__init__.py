"""Statistics, tables, figures and the report. pandas, numpy, scipy, matplotlib only."""
