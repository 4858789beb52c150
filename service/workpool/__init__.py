"""The process pool for CPU work and how a cancelled task stops its pool work.

A floor of its own, below engines and stages: both push work here, and nothing here imports them.
"""
