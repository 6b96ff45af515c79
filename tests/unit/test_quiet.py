"""What the logs say of errors a library retries by itself (trackpipe.quiet)."""

import logging

from trackpipe import quiet


def test_a_transient_coordinator_error_is_info_and_a_real_one_stays_an_error(caplog):
    quiet.install()
    log = logging.getLogger("aiokafka.consumer.group_coordinator")
    # at the logger itself: a CLI command run earlier in the suite may have raised aiokafka's
    with caplog.at_level(logging.INFO, logger="aiokafka.consumer.group_coordinator"):
        log.error("Group Coordinator Request failed: %s",
                  "[Error 15] GroupCoordinatorNotAvailableError")
        log.error("Group Coordinator Request failed: %s", "[Error 30] GroupAuthorizationFailed")
    assert [r.levelname for r in caplog.records] == ["INFO", "ERROR"]
