"""The judging core: the pytest plugin and its settings (plugin.py, settings.py), per-phase deadlines
(deadline.py) and the verdict of each clause (verdicts.py), which it hands to report/. The clause checks
themselves live in contract_tests/clauses/, one layer above."""
