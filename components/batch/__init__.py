"""The batch family: the OpenAI-compatible batch API's queue, files bucket, records table and the queue consumer
service.

It builds on the workload, observability and network families and the shared modules. Security stance:
jobs.py's (TLS-only, encrypted, private storage; the consumer's role reaches only this stack's queue, bucket
and table).
"""
