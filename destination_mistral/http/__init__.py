"""Talking to the Mistral API: the client's request loop (client.py), what a failure means
(errors.py), when a request may start (pacer.py) and the headers both read (headers.py).

Nothing here knows records or output: enrich/ builds the requests and reads their answers."""
