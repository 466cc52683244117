"""Shared material of the reliability tests: the hostile-input corpus, the fault and crash scenarios,
and a harness that runs destination-mistral the way the platform does and keeps everything it said
(stdout, stderr, logs, output files), so that the secrets test can search all of it."""
