"""The contract itself: its clauses (clause.py, catalogue.toml), what each Snakepit release does (profiles.py,
releases.toml) and where Snakepit's own code says so (snakepit_sources.py/.toml). The bottom layer every other
role reads; imports nothing else of the kit but errors.py."""
