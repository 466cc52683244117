"""What a record is sent to Mistral as and what comes back: the chat and embeddings enrichers, the
Batch API's, and what they share (batching, templates, token counts, results).

Nothing here writes output or paces requests: the pipeline (sync/) decides when to submit, the
client (http/) when a request may start."""
