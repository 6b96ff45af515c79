"""The local Kafka launcher's pure parts."""


def test_cluster_ids_never_start_with_a_dash():
    from trackpipe.kafka.launcher import new_cluster_id

    ids = {new_cluster_id() for _ in range(5000)}  # about 78 would start with '-' otherwise
    assert len(ids) == 5000 and not any(i.startswith("-") for i in ids)
    assert all(len(i) == 22 for i in ids)
