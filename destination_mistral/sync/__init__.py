"""A `write` from input to STATE: the runner sets a sync up, the pipeline builds its parts, the
dispatcher gets each record's result from the cache or the enrichers, and the committer stores the
results and releases each STATE by the rule in states.py: only once everything before it is stored."""
