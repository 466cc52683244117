"""`destination-mistral load`: plain JSON Lines or CSV records from a local file, sent through the same
write path as `write` (sync/runner.write_messages), with the catalog and the protocol messages built
here in memory.

- records.py reads the file's rows and refuses bad input with the file, the line and the fix;
- inference.py infers the stream's JSON schema and primary key, and types CSV values;
- resume.py words the STATE messages a rerun resumes from, and reads them back;
- command.py is the command itself: arguments, the two passes over the file, the summary."""
