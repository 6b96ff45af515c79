"""The records that cross Kafka, their msgpack encoding and the topic table. No I/O here."""
