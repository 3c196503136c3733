"""Kafka helpers: client settings, the Faust transport, topics, offsets and the merge of
partitions in record-time order."""
