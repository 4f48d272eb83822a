"""The reproducible SMTP benchmark suite (issue 10): servers and clients over loopback.

Run it with ``.venv/bin/python bench/suite.py [--quick]``; see bench/README.md.

* :mod:`suite.raw`: the raw asyncio SMTP responder, the reference server and the sink;
* :mod:`suite.servers`: the entry each server subprocess runs (``KIND PORT [--tls CERT KEY]``);
* :mod:`suite.procs`: starting, querying and stopping those subprocesses;
* :mod:`suite.loadgen`: the load generator (raw asyncio Protocol code);
* :mod:`suite.clients`: the client contenders (ours, smtplib, aiosmtplib, smtpproto);
* :mod:`suite.report`: the tables, the JSON file and the plots;
* :mod:`suite.runner`: the matrix, the repetitions and ``main()``.
"""
