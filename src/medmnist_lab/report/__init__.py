"""Browsable HTML reports of runs and studies (`medmnist-lab report`), drawn with matplotlib.

- style.py    one plot style (Okabe-Ito palette), PNG + SVG
- plots.py    the figures, from plain data
- runs.py     a run folder -> its page's data and figures (missing pieces listed, not fatal)
- studies.py  a results store -> per-dataset tables with CIs, references, paired tests, figures
- site.py     the static site: index, run and study pages, local CSS/JS only
"""
