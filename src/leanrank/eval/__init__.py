"""The evaluation harness: what each pipeline configuration buys in quality, and what it sends and costs.

Modules, in the order data flows through them:
`datasets` (pool, queries, judgements from a SPEC string) → `configs` (named presets) → `runner` (the
real embedded pipeline over the pool) → `metrics` and `silver` (ranx scores, cost, latency) → `report`
(Markdown, JSON, TREC runs, chart). This package module imports nothing, so `leanrank --help` does not
pay for ranx and matplotlib.
"""
