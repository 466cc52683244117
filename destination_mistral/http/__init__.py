"""Talking to the Mistral API.

- client.py: the request loop (MistralClient), on top of transport.py (the aiohttp session, or a
  test's sender), answers.py (a body read up to its cap and decoded), probe.py (the first request
  goes alone), retry_budget.py (how long a request may keep trying) and refusals.py (the answers
  that stop the sync);
- errors.py: what a failure means (refusal classes, failure causes, Retry-After);
- pacer.py: when a request may start (Pacer), composed of request_pace.py (requests per second),
  token_bucket.py and minute_log.py (tokens per minute), fixed_windows.py (a server that counts per
  fixed window), token_costs.py (our count against the server's) and tickets.py (what each started
  request was charged);
- headers.py: the response headers the pacer and the error sorting read.

Nothing here knows records or output: enrich/ builds the requests and reads their answers."""
