#!/bin/bash
# Healthy when the broker answers an ApiVersions request (the first thing every Kafka client
# sends) on its client port: a bare TCP connect succeeds before the broker serves requests.
# Plain bash, no JVM started for it, so probing every few seconds costs next to nothing.
set -euo pipefail
exec 3<>"/dev/tcp/127.0.0.1/${1:-9092}"
# size 10 | api key 18 (ApiVersions) | version 0 | correlation id 1 | client id: null
printf '\x00\x00\x00\x0a\x00\x12\x00\x00\x00\x00\x00\x01\xff\xff' >&3
answer=$(timeout 5 head -c 10 <&3 | od -An -tx1 | tr -d ' \n')
# size (4 bytes), then our correlation id and error code 0 (NONE)
[ "${answer:8:12}" = 000000010000 ]
