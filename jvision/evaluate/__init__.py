"""Evaluation: metrics, kNN, linear probe, reports and plots.

`metrics` holds the numpy classification metrics and the report written to
`DIR/eval/metrics.json`; `plots` draws the confusion matrix and training
curves beside it. Import the submodules directly, e.g.
`from jvision.evaluate import metrics`; `plots` imports matplotlib, so it is
not imported here.
"""
