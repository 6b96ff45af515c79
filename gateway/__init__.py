"""The HTTP gateway: validate, publish the raw request to Kafka, answer within the deadline."""
