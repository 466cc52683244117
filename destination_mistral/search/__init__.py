"""`destination-mistral search`: the k records (or chunks) of a stream nearest to a query, by cosine
similarity of embeddings, read back from the output the destination wrote.

- command: the arguments, the run, and how a failure is told to the person at the terminal
- query: the stream's embedding settings, and the query embedded with them through the HTTP client
- target: what every output's search shares (a hit, the table or file searched, the errors naming a stream)
- duckdb_search, postgres_search, jsonl_search: the nearest rows of each output
- report: the hits as a readable table or as JSON"""
