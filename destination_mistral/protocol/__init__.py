"""The Airbyte protocol as `destination-mistral` speaks it: the files its commands name, the
messages read from stdin and the lines written to stdout. No other module reads or writes the
protocol's JSON.

Why not the CDK: importing `airbyte_cdk` costs about a second (its package builds every serializer
on import), more than enriching 5,000 records takes, and a nightly sync whose records are all
answered by the cache would spend most of its run starting up. The protocol's own dataclasses
(`airbyte_protocol_dataclasses`, the classes the CDK re-exports) cost a few hundredths of a second
and hold the configured catalog, the STATE messages' shape and the LOG lines. RECORD lines, the hot
path, never become dataclasses: orjson reads them into the plain objects of messages.py. The CDK's
classes appear only where the CDK calls in (`DestinationMistral`, used by PyAirbyte-style callers
and the standard tests), converted at that edge."""
