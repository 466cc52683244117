"""A `write` from input to STATE: the runner sets a sync up, the pipeline dispatches records to the
cache or the enrichers, and the committer stores their results and releases each STATE only once
everything before it is stored."""
