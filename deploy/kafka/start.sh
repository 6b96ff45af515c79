#!/bin/sh
# One Kafka node, KRaft, configured from the environment as the apache/kafka image is:
# KAFKA_<NAME>=<value> sets <name> in server.properties (lowercased, `_` read as `.`, `__` as
# `_`), CLUSTER_ID formats the data folder on the first start, KAFKA_HEAP_OPTS sizes the heap.
# Logs go to stdout (`docker logs`), the JMX exporter serves Prometheus on port 7071.
set -eu

: "${CLUSTER_ID:?set CLUSTER_ID (any id of kafka-storage random-uuid's form)}"
CONFIG=/var/lib/kafka/server.properties
{
    echo "log.dirs=/var/lib/kafka/data"
    env | sort | while IFS='=' read -r name value; do
        case "$name" in
            KAFKA_HEAP_OPTS | KAFKA_OPTS) ;;
            KAFKA_*) property=$(echo "${name#KAFKA_}" | tr 'A-Z' 'a-z' |
                                sed -e 's/__/%u%/g' -e 's/_/./g' -e 's/%u%/_/g')
                     echo "$property=$value" ;;
        esac
    done
} >"$CONFIG"  # a later line wins over an earlier one: the environment over the defaults

LIBS='/opt/kafka/libs/*'
LOG4J=-Dlog4j.configuration=file:/opt/kafka/config/log4j.properties
DATA=$(sed -n 's/^log\.dirs=//p' "$CONFIG" | tail -n 1)
if [ ! -f "$DATA/meta.properties" ]; then
    java -cp "$LIBS" "$LOG4J" kafka.tools.StorageTool format --ignore-formatted \
        --cluster-id="$CLUSTER_ID" -c "$CONFIG"
fi

AGENT=$(ls /opt/kafka/agent/jmx_prometheus_javaagent-*.jar)
# shellcheck disable=SC2086 # KAFKA_HEAP_OPTS and KAFKA_OPTS are lists of options
exec java ${KAFKA_HEAP_OPTS:--Xmx512m -Xms512m} -XX:+UseG1GC ${KAFKA_OPTS:-} "$LOG4J" \
    "-javaagent:$AGENT=7071:/opt/kafka/config/metrics.yml" \
    -cp "$LIBS" kafka.Kafka "$CONFIG"
