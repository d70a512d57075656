"""Histogram buckets, few on purpose: each bucket is a series per label set, and the scrape stays within its
series budget (docs/metrics.md). Latencies from a millisecond to ten seconds, five times apart."""

LATENCY = (0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10.0)
# Tasks in one group commit: from a lone enqueue to a full EnqueueTasks batch and beyond.
GROUP_COMMIT = (1, 4, 16, 64, 256, 1024, 4096)
